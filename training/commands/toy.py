"""`python -m training toy <study>`: the toy studies of the paradigms paper (CPU, minutes)."""

from __future__ import annotations

import argparse

HELP = "toy studies: cagrad (2-D two-objective problem), scale (loss-scale invariance)"
DESCRIPTION = (
    "Reproduces the two toy studies of 'Examining Common Paradigms in Multi-Task Learning' (Elich et "
    "al.) with the project's own MTL methods: `cagrad` counts the iterations GD and Adam need with "
    "EW/PCGrad/CAGrad to reach the minimum of the average loss of the CAGrad paper's 2-D problem; "
    "`scale` measures which updates of a tiny shared MLP change when the task losses are rescaled. "
    "Each writes its table (CSV, JSON, Markdown) and figures to --out; docs/toys.md shows them."
)
STUDIES = ("cagrad", "scale")


def _load(name: str):
    from training.cli import optional_module

    return optional_module(f"training.toy.{name}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study", metavar="<study>", required=True)
    for name in STUDIES:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(
            name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_study=module)


def run(args: argparse.Namespace) -> int:
    return int(args._study.run(args) or 0)
