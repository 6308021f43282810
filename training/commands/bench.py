"""`python -m training bench <what>`: speed measurements that print ratios measured in one run."""

from __future__ import annotations

import argparse

HELP = (
    "measure speed: model, methods, train, diagnostics, runtime, quantization (accuracy), node, synth, "
    "transport"
)
DESCRIPTION = (
    "Benchmarks print absolute times and ratios measured in the same run (e.g. a method's step time "
    "relative to EW). Record results in docs/benchmarks.md together with the machine."
)
BENCHMARKS = (
    "model", "methods", "train", "diagnostics", "runtime", "quantization", "node", "synth", "transport"
)


def _load(name: str):
    from training.cli import optional_module

    return optional_module(f"training.bench.{name}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="<what>", required=True)
    for name in BENCHMARKS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(p)
        p.set_defaults(_bench=module)


def run(args: argparse.Namespace) -> int:
    return int(args._bench.run(args) or 0)
