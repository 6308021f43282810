"""`python -m training sweep`: train a list of methods x seeds (x levels) on one config, then report."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from training.rundir import RunDir

HELP = "train methods x seeds (x levels) on one config, one process per run, then write the report"
DESCRIPTION = (
    "Runs `python -m training train --config CFG [overrides] mtl.name=M mtl.level=L seed=S "
    "run_dir=OUT/runs/<M>[-feature]/seed<S>` for every combination, sequentially, each in its own "
    "process (a crash or out-of-memory ends one run, not the sweep), then `python -m training report` "
    "over the finished runs into OUT/report.\n\n"
    "Loss-weighting methods (EW, UW, ...) have no level and run once per seed whatever --levels says. "
    "Runs whose directory already holds metrics.json are not repeated unless --force, so an interrupted "
    "sweep resumes where it stopped. Each run's console output goes to OUT/logs/<run>.log.\n\n"
    "Dense-family configs (NYU-v2, CityScapes): --single-task also trains one single-task baseline per "
    "task and seed (EW, `dense.model.tasks=[<task>]`, runs/single-<task>/seed<S>), which the report "
    "uses for \u0394m (docs/dense.md).\n\n"
    "Example (a complete small sweep on a CPU):\n"
    "  python -m training sweep --config config/train/synthetic.yaml --methods ew,pcgrad --seeds 0,1 "
    "--out runs/sweep train.steps=20 diagnostics.every=2\n"
    "  python -m training sweep --config config/train/nyuv2-synthetic.yaml --methods ew,pcgrad "
    "--levels parameter,feature --single-task --out runs/nyu-sweep"
)
RESERVED = ("mtl.name", "mtl.level", "seed", "run_dir")


@dataclass(frozen=True)
class PlannedRun:
    method: str
    level: str
    level_free: bool
    seed: int
    run_dir: Path
    log: Path
    single_task: str | None = None  # a dense single-task baseline of this task

    @property
    def name(self) -> str:
        if self.single_task is not None:
            return f"single-{self.single_task}"
        return f"{self.method}{'' if self.level_free or self.level == 'parameter' else '-' + self.level}"


def _csv(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what}: expected a comma-separated list, got {text!r}")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config (YAML) shared by every run")
    parser.add_argument("--methods", required=True, help="comma-separated MTL method names, e.g. ew,pcgrad")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument(
        "--levels",
        default="parameter",
        help="comma-separated levels for gradient methods: parameter,feature (default: parameter)",
    )
    parser.add_argument("--out", required=True, help="sweep directory (runs/, logs/, report/)")
    parser.add_argument("--baseline", default="ew", help="baseline method of the report (default: ew)")
    parser.add_argument(
        "--single-task", action="store_true",
        help="dense configs: also train an EW single-task baseline per task and seed (for \u0394m)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="rerun runs that already finished")
    parser.add_argument("--dry-run", action="store_true", help="print the train commands, run nothing")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")


def plan(args: argparse.Namespace) -> list[PlannedRun]:
    """The runs of the sweep, in order (method, level, seed); validates names before anything runs."""
    from training.mtl.registry import canonical
    from training.mtl.registry import levels as method_levels

    try:
        methods = [canonical(m) for m in _csv(args.methods, "methods")]
    except ValueError as exc:  # name the sweep's option, not the config key the registry names
        raise ValueError(f"--methods: {exc}".replace("mtl.name: ", "")) from None
    try:
        seeds = [int(s) for s in _csv(args.seeds, "seeds")]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    levels = _csv(args.levels, "levels")
    bad = [lv for lv in levels if lv not in ("parameter", "feature")]
    if bad:
        raise ValueError(f"--levels: expected parameter and/or feature, got {bad}")
    for o in args.overrides:
        key = o.split("=", 1)[0].strip()
        if "=" not in o:
            raise ValueError(f"overrides: expected KEY=VALUE, got {o!r}")
        if key in RESERVED:
            raise ValueError(
                f"overrides: {key!r} is set by the sweep itself (use --methods/--levels/--seeds)"
            )
    out = Path(args.out)
    runs: list[PlannedRun] = []
    for task in _single_tasks(args):
        for seed in seeds:
            name = f"single-{task}"
            runs.append(
                PlannedRun("ew", "parameter", True, seed, out / "runs" / name / f"seed{seed}",
                           out / "logs" / f"{name}-seed{seed}.log", single_task=task)
            )  # fmt: skip
    for method in methods:
        supported = [lv.value for lv in method_levels(method)]
        level_free = not supported
        for level in ["parameter"] if level_free else levels:
            if not level_free and level not in supported:
                raise ValueError(f"--levels: method {method!r} does not support level {level!r}")
            for seed in seeds:
                probe = PlannedRun(method, level, level_free, seed, Path(), Path())
                run_dir = out / "runs" / probe.name / f"seed{seed}"
                runs.append(
                    PlannedRun(
                        method,
                        level,
                        level_free,
                        seed,
                        run_dir,
                        out / "logs" / f"{probe.name}-seed{seed}.log",
                    )
                )
    return runs


def _single_tasks(args: argparse.Namespace) -> tuple[str, ...]:
    """The tasks of the dense config (with the overrides) when --single-task, else ()."""
    if not getattr(args, "single_task", False):
        return ()
    from training.config import load_config

    cfg = load_config(args.config, args.overrides)
    if cfg.family != "dense":
        raise ValueError(
            f"--single-task: only for dense-family configs (family: dense); {args.config} is {cfg.family!r}"
        )
    return tuple(cfg.dense.model.tasks)


def train_command(args: argparse.Namespace, run: PlannedRun) -> list[str]:
    tasks = [f"dense.model.tasks=[{run.single_task}]"] if run.single_task is not None else []
    return [
        sys.executable, "-m", "training", "train", "--config", str(args.config), *args.overrides, *tasks,
        f"mtl.name={run.method}", f"mtl.level={run.level}", f"seed={run.seed}", f"run_dir={run.run_dir}",
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise FileNotFoundError(f"--config: no such file {args.config!r}")
    runs = plan(args)
    if args.dry_run:
        for r in runs:
            print(" ".join(train_command(args, r)))
        return 0
    env = dict(os.environ)
    # the child must import this checkout's `training` whatever the working directory
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    failed: list[PlannedRun] = []
    for i, r in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {r.name} seed {r.seed}"
        if RunDir(r.run_dir).metrics_json.is_file() and not args.force:
            print(f"{tag}: done already ({r.run_dir}), skipped")
            continue
        r.log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(r.log, "w") as log:
            code = subprocess.run(
                train_command(args, r), stdout=log, stderr=subprocess.STDOUT, env=env
            ).returncode
        took = time.perf_counter() - start
        if code != 0 or not RunDir(r.run_dir).metrics_json.is_file():
            failed.append(r)
            tail = r.log.read_text().strip().splitlines()[-8:]
            print(f"{tag}: FAILED (exit {code}, {took:.0f} s); log {r.log}:\n    " + "\n    ".join(tail))
        else:
            print(f"{tag}: ok ({took:.0f} s) -> {r.run_dir}")
    finished = [r.run_dir for r in runs if RunDir(r.run_dir).metrics_json.is_file()]
    if finished:
        from training.commands.report import write_any_report

        report = write_any_report(finished, Path(args.out) / "report", baseline=args.baseline)
        print(f"report: {report.out_dir / 'report.md'} ({len(finished)} runs)")
    if failed:
        print(
            f"{len(failed)} of {len(runs)} runs failed: "
            + ", ".join(f"{r.name}/seed{r.seed}" for r in failed)
        )
        return 1
    return 0
