"""`python -m training train`: train the network with any MTL method from a YAML config."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "train with a config (config/train/*.yaml) and dotted overrides; resume a run"
DESCRIPTION = """\
Train a model family with any registered MTL method: the RGB-D amodal bin-picking network (the
default) or, with `family: dense`, the NYU-v2 / CityScapes dense network (docs/dense.md).

  python -m training train --config config/train/synthetic.yaml
  python -m training train --config config/train/nyuv2-synthetic.yaml mtl.name=pcgrad run_dir=runs/nyu
  python -m training train --config config/train/nyuv2.yaml dense.model.tasks=[depth]   # single-task
  python -m training train --config config/train/metagraspnet.yaml mtl.name=cagrad mtl.hparams.c=0.4 \\
      optim.lr=1e-3 run_dir=runs/cagrad
  python -m training train --resume runs/cagrad                # continue exactly where it stopped
  python -m training train --resume runs/cagrad train.steps=20000   # ... and train longer

Overrides are dotted keys of the config tree (see docs/training.md); values are YAML
(`mtl.tasks={det: [rpn_objectness, rpn_box, roi_cls, roi_box], ...}`). Unknown keys and wrong types
are errors. The run directory gets config.yaml, metrics.csv, eval.csv, metrics.json, tb/,
checkpoints/last.pt and plots/. Multi-GPU: `torchrun --nproc_per_node N -m training train ...`
(train.batch_size is the global batch)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (default: the built-in defaults / the resumed run's)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR_OR_CKPT", help="continue a run from checkpoints/last.pt (or a .pt file)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def run(args: argparse.Namespace) -> int:
    from training.checkpoint import read_checkpoint
    from training.config import config_from_dict, load_config
    from training.engine.run import train
    from training.engine.trainer import TrainingDivergedError
    from training.rundir import run_dir_of_checkpoint

    checkpoint = None
    if args.resume is not None:
        checkpoint = read_checkpoint(args.resume)
        if args.config is None:
            cfg = config_from_dict(checkpoint["config"], args.overrides)
        else:
            cfg = load_config(args.config, args.overrides)
        if not any(o.startswith("run_dir=") for o in args.overrides):
            # continue in the directory the checkpoint lives in, even if the run was moved
            run_dir = run_dir_of_checkpoint(checkpoint["path"])
            if run_dir is not None:
                cfg.run_dir = str(run_dir)
    else:
        cfg = load_config(args.config, args.overrides)
    try:
        summary = train(cfg, resume=args.resume, checkpoint=checkpoint)
    except TrainingDivergedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":  # torchrun: one summary line, from rank 0
        return 0
    print(
        f"trained {summary['step']} steps ({summary['skipped']} skipped) in "
        f"{summary['train_time_s']:.1f} s; run directory: {cfg.run_dir}"
    )
    return 0
