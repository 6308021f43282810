"""`python -m training bench runtime`: latency of the ONNX runtime vs PyTorch eager on the same frames.

Both paths are timed end to end from a numpy camera frame (uint8 RGB + float32 metres) to
full-resolution masks: the runtime as `Detector.__call__` (pre + onnxruntime + paste), eager as
numpy -> tensors + `forward_export` + the same `paste_masks`. The network part alone is reported
too. Every provider present is measured (CPU always; CUDA and TensorRT when onnxruntime has them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

HELP = "latency of the ONNX runtime (pre+infer+post) vs PyTorch eager, per provider and size"
DESCRIPTION = (
    "Exports the model (a checkpoint, or a random-init default ModelConfig) once, then times the "
    "torch-free runtime and PyTorch eager on the same synthetic RGB-D frames at each --sizes entry. "
    "Prints p50/p95 in ms and the runtime/eager ratio (goal on CPU: <= 0.8). Both sides get the same "
    "number of CPU threads (--threads)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint to export (default: random-init model)"
    )
    parser.add_argument("--sizes", default="512x512,480x640", help="comma-separated HxW frame sizes")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="runtime score threshold")
    parser.add_argument(
        "--providers", default="all", help="'all' (every installed of CPU/CUDA/TensorRT) or a comma list"
    )
    parser.add_argument("--fp16", action="store_true", help="TensorRT fp16 engines")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="ModelConfig override for the random-init model, e.g. rpn_post_nms_top_n_test=300 (repeatable)",
    )


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError as exc:
            raise ValueError(f"--sizes: expected entries like 512x512 (HxW), got {item!r}") from exc
        sizes.append((h, w))
    return sizes


def _overrides(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string such as fusion=add
    return out


def percentiles(times_ms: list[float]) -> tuple[float, float]:
    """(p50, p95) of a list of milliseconds."""
    arr = np.asarray(times_ms)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def _eager_call(model, rgb: np.ndarray, depth: np.ndarray, args: argparse.Namespace) -> Callable[[], float]:
    """Eager end to end (numpy -> tensors -> forward_export -> paste); returns network-only ms."""
    import torch

    from mtl_grasp.runtime import paste_masks
    from training.export.parity import frame_tensors

    h, w = depth.shape

    def call() -> float:
        with torch.no_grad():
            rgb_t, depth_t = frame_tensors(rgb, depth)
            t0 = time.perf_counter()
            out = model.forward_export(rgb_t, depth_t)
            net = (time.perf_counter() - t0) * 1e3
        boxes, scores, _, vis, amo, _ = (o.numpy() for o in out)
        keep = scores >= args.score_threshold
        paste_masks(boxes[keep], vis[keep], h, w)
        paste_masks(boxes[keep], amo[keep], h, w)
        return net

    return call


def _runtime_call(det, rgb: np.ndarray, depth: np.ndarray) -> Callable[[], float]:
    return lambda: det(rgb, depth).timings.infer_ms


def _measure(
    paths: dict[str, Callable[[], float]], iters: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Time every path `iters` times, interleaved (round-robin) so that load from other processes
    on a shared machine hits all paths alike.

    Returns per path: end-to-end wall ms, network wall ms, and end-to-end process CPU ms (all threads
    of this process; unlike wall time it is not inflated by other processes on the machine).
    """
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    totals: dict[str, list[float]] = {name: [] for name in paths}
    nets: dict[str, list[float]] = {name: [] for name in paths}
    cpus: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(iters):
        for name, fn in paths.items():
            c0, t0 = time.process_time(), time.perf_counter()
            nets[name].append(fn())
            totals[name].append((time.perf_counter() - t0) * 1e3)
            cpus[name].append((time.process_time() - c0) * 1e3)
    return totals, nets, cpus


def run(args: argparse.Namespace) -> int:
    import onnxruntime as ort
    import torch

    from mtl_grasp.contract import ModelMetadata
    from mtl_grasp.runtime import Detector
    from training.export import export_model, metadata_from_config, model_from_checkpoint
    from training.export.parity import synthetic_frame
    from training.model.amodal_rcnn import AmodalRCNN, RandomInitWarning
    from training.model.config import ModelConfig

    sizes = _parse_sizes(args.sizes)
    if args.iters < 1 or args.threads < 1:
        raise ValueError("--iters and --threads: expected positive ints")
    torch.set_num_threads(args.threads)
    overrides = _overrides(args.set)
    if args.checkpoint and overrides:
        raise ValueError("--set: only applies to the random-init model, not to --checkpoint")
    if args.checkpoint:
        model, config = model_from_checkpoint(args.checkpoint)
        metadata = metadata_from_config(config)
        source = args.checkpoint
    else:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomInitWarning)
            model = AmodalRCNN(ModelConfig.from_dict({**ModelConfig().to_dict(), **overrides})).eval()
        metadata = ModelMetadata(train_image_size=model.config.image_size)
        source = f"random-init ModelConfig {overrides or '(defaults)'}"
    available = ort.get_available_providers()
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if args.providers != "all":
        wanted = [p.strip() for p in args.providers.split(",")]
    providers = [p for p in wanted if p in available or p.lower() in ("cpu", "cuda", "tensorrt")]

    print(f"model: {source}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"threads={args.threads}; iters={args.iters}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        export_model(model, path, model.config.image_size, metadata, verify=False)
        print(f"export: {time.perf_counter() - t0:.1f} s")
        header = (
            f"{'size':>9} {'path':<28} {'p50 ms':>8} {'p95 ms':>8} {'net p50':>8} {'ratio':>6} "
            f"{'cpu p50':>8} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        for h, w in sizes:
            rgb, depth = synthetic_frame(h, w, seed=0)
            paths: dict[str, Callable[[], float]] = {
                "pytorch eager (cpu)": _eager_call(model, rgb, depth, args)
            }
            for provider in providers:
                det = Detector(
                    path,
                    providers=provider,
                    score_threshold=args.score_threshold,
                    num_threads=args.threads,
                    fp16=args.fp16,
                    warmup=(h, w),
                )
                paths[f"runtime {det.providers[0].replace('ExecutionProvider', '')}"] = _runtime_call(
                    det, rgb, depth
                )
            totals, nets, cpus = _measure(paths, args.iters, args.warmup)
            e50 = percentiles(totals["pytorch eager (cpu)"])[0]
            c50 = percentiles(cpus["pytorch eager (cpu)"])[0]
            for name in paths:
                p50, p95 = percentiles(totals[name])
                cpu50 = percentiles(cpus[name])[0]
                print(
                    f"{h:>4}x{w:<4} {name:<28} {p50:8.1f} {p95:8.1f} {percentiles(nets[name])[0]:8.1f} "
                    f"{p50 / e50:6.2f} {cpu50:8.1f} {cpu50 / c50:6.2f}"
                )
    print(
        "ratio = runtime p50 / eager p50 (end to end, wall); net = network only (forward_export / "
        "session.run); cpu = process CPU time per call (robust to other load; GPU time not included)"
    )
    return 0
