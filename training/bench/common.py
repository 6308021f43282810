"""What the model-level benchmarks share: device options, argument checks, the benchmark model, the
machine line. (`bench train`, `runtime` and `node` set up their own processes and devices.)"""

from __future__ import annotations

import argparse
import platform
import warnings
from typing import Any

from training.bench.scenes import plant_trained_proposals


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device` and `--threads`; resolve them with `torch_device`."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """A ValueError naming the option for the first of `names` that is < 1 (None = unset, allowed)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag}: expected a positive integer, got {value}")


def torch_device(args: argparse.Namespace) -> Any:
    """The `torch.device` of `--device` (default cuda if available); applies `--threads`."""
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    return device


def bench_model(device: Any, channels: int | None, fg_rois: int, **config: Any) -> Any:
    """An `AmodalRCNN` with seeded random weights (the same proposals and ROI counts in every run),
    `fpn_channels = head_channels = channels` (None: ModelConfig's), a trained RPN's foreground ROIs
    (`plant_trained_proposals`), in training mode on `device`."""
    import torch

    from training.model import AmodalRCNN, ModelConfig

    widths = {} if channels is None else {"fpn_channels": channels, "head_channels": channels}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init is intended here
        model = AmodalRCNN(ModelConfig(**widths, **config)).to(device).train()
    plant_trained_proposals(model, fg_rois)
    return model


def machine(device: Any) -> str:
    """`GPU name` or `CPU <processor>, N torch threads`, then the torch version."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    return f"{name} (torch {torch.__version__})"
