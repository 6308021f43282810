"""`python -m training methods [--json] [NAME ...]`: the MTL methods of the registry."""

from __future__ import annotations

import argparse
import inspect
import json
import textwrap
from typing import Any

HELP = "list the MTL methods: kind, levels, hyperparameters with defaults, cost, paper"
DESCRIPTION = (
    "Lists every registered MTL method (training/mtl/methods/) with its kind, the levels it runs at "
    "(and why a level does not apply), its hyperparameters with their defaults (pass them as "
    "mtl.hparams in the training config), the number of backward passes a step costs, its paper, and a "
    "NOTE where an implementation reduces to another method (mtl_io). "
    "Give method names to show only those; --json prints machine-readable output."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these methods (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "?"
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", str(annotation))


def describe(name: str) -> dict[str, Any]:
    """One method's entry, from its class attributes and constructor signature (an alias: its
    target's, at the alias's level, with "alias_of")."""
    from training.mtl.base import hyperparameters
    from training.mtl.registry import aliases, get, levels

    cls = get(name)
    fixed = aliases().get(name.lower().replace("-", "_"))
    hparams = {
        hp: {"type": _type_name(annotation), "default": default}
        for hp, (annotation, default) in hyperparameters(cls).items()
    }
    return {
        "name": fixed.name if fixed else cls.name,
        "alias_of": fixed.target if fixed else None,
        "kind": cls.kind,
        "levels": [lv.value for lv in levels(name)],
        "level_note": fixed.note if fixed else cls.level_note,
        "hyperparameters": hparams,
        "cost": cls.cost,
        "stochastic": bool(cls.stochastic),
        "needs_post_step": bool(cls.needs_post_step),
        "paper": cls.paper,
        "note": str(getattr(cls, "note", "")),
    }


def _text(entry: dict[str, Any]) -> str:
    pad = " " * 11
    levels = ", ".join(entry["levels"]) if entry["levels"] else "n/a"
    alias = f", alias of {entry['alias_of']}" if entry["alias_of"] else ""
    lines = [f"{entry['name']}  ({entry['kind']}{alias})", f"  levels:  {levels}"]
    if entry["level_note"]:
        lines += textwrap.wrap(entry["level_note"], 100, initial_indent=pad, subsequent_indent=pad)
    hps = ", ".join(f"{k}: {v['type']} = {v['default']!r}" for k, v in entry["hyperparameters"].items())
    lines.append(f"  hparams: {hps or 'none'}")
    flags = [flag for flag, on in (("stochastic", entry["stochastic"]),
                                   ("post-step update", entry["needs_post_step"])) if on]
    extra = f"; {', '.join(flags)}" if flags else ""
    lines.append(f"  cost:    {entry['cost']} (backward passes per step){extra}")
    lines += textwrap.wrap(entry["paper"], 100, initial_indent="  paper:   ", subsequent_indent=pad)
    if entry["note"]:
        lines += textwrap.wrap(entry["note"], 100, initial_indent="  NOTE:    ", subsequent_indent=pad)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from training.mtl.registry import aliases, names

    selected = args.names or sorted([*names(), *aliases()])
    entries = [describe(n) for n in selected]  # unknown names raise ValueError with a suggestion
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
    else:
        print(f"{len(entries)} MTL method(s) and alias(es); EW's update G.sum(0) is the reference scale.\n")
        print("\n\n".join(_text(e) for e in entries))
    return 0
