"""`python -m training bench runtime`: latency of the ONNX runtime (float32 and INT8) vs PyTorch eager.

Every path is timed end to end from a numpy camera frame (uint8 RGB + float32 metres) to
full-resolution masks: the runtime as `Detector.__call__` (pre + onnxruntime + `decode`), eager as
numpy -> tensors + `forward_export` + the same `decode`. The network part alone is reported too.
Calls are interleaved round-robin, so load from other processes hits every path alike, and the ratio
columns are measured in one run. `--int8` adds the INT8 (QDQ) model of the same export;
`--budget` sets a test-time budget before export; `--session` sets onnxruntime session options;
`--profile` prints where the time goes per stage (onnxruntime's profiler, `runtime_profile`).
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

HELP = "latency of the ONNX runtime (float32 / INT8) vs PyTorch eager, per provider and size"
DESCRIPTION = (
    "Exports the model (a checkpoint, or a random-init default ModelConfig = the paper's network) once, "
    "optionally quantises it to INT8 (--int8), then times PyTorch eager and the torch-free runtime on the "
    "same synthetic RGB-D frames at each --sizes entry, interleaved. Prints p50/p95 in ms, the network "
    "time, process CPU time, and the ratios to eager and to the float32 runtime. Both sides get the same "
    "number of CPU threads (--threads).\n\n"
    "Example (docs/benchmarks.md, 'Runtime'): python -m training bench runtime --sizes 480x640 "
    "--threads 2 --iters 5 --int8 --budget fast --no-eager --profile"
)
EAGER = "pytorch eager (cpu)"


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
        help="ModelConfig override for the random-init model, e.g. fusion=add (repeatable)",
    )
    parser.add_argument("--int8", action="store_true", help="also time the INT8 (QDQ) model, side by side")
    parser.add_argument(
        "--calibration",
        default=None,
        help="--int8: calibration folder (default: synthetic frames of --sizes)",
    )
    parser.add_argument("--calibration-frames", type=int, default=2, help="--int8: calibration frames")
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        help="test-time budget (config/runtime.yaml name or proposals=N,detections=N); repeatable: one "
        "export per budget, all timed side by side (eager uses the last)",
    )
    parser.add_argument(
        "--session", action="append", default=[], metavar="KEY=VALUE",
        help="onnxruntime session option (mtl_grasp.runtime.session.SessionConfig), repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--inference-size", type=int, default=None,
        help="runtime paths resize frames so the longer side has this many pixels (Detector inference_size)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-session", action="append", default=[], metavar="KEY=VALUE[;KEY=VALUE]",
        help="add a runtime path per model with these session options changed (side by side), repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--no-eager", action="store_true", help="skip PyTorch eager (ratios vs float32 runtime)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print the per-stage profile of each ONNX model"
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


def _overrides(items: list[str], option: str = "--set") -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option}: expected KEY=VALUE, got {item!r}")
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
    """Eager end to end (numpy -> tensors -> forward_export -> decode); returns network-only ms."""
    import torch

    from mtl_grasp.contract import OUTPUT_NAMES
    from mtl_grasp.runtime.postprocess import decode
    from training.export.parity import frame_tensors

    h, w = depth.shape

    def call() -> float:
        with torch.no_grad():
            rgb_t, depth_t = frame_tensors(rgb, depth)
            t0 = time.perf_counter()
            out = model.forward_export(rgb_t, depth_t)
            net = (time.perf_counter() - t0) * 1e3
        outputs = {name: o.numpy() for name, o in zip(OUTPUT_NAMES, out)}
        decode(outputs, h, w, None, score_threshold=args.score_threshold)
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


def _check_args(args: argparse.Namespace) -> None:
    if args.iters < 1 or args.threads < 1 or args.calibration_frames < 1:
        raise ValueError("--iters, --threads and --calibration-frames: expected positive ints")
    if args.checkpoint and args.set:
        raise ValueError("--set: only applies to the random-init model, not to --checkpoint")
    if args.calibration and not args.int8:
        raise ValueError("--calibration: only used with --int8")


def _build_model(args: argparse.Namespace):
    """(model in eval mode, metadata, description) with the budget applied."""
    import torch

    from mtl_grasp.contract import ModelMetadata
    from training.export import metadata_from_config, model_from_checkpoint
    from training.export.budget import parse_budget
    from training.model.amodal_rcnn import AmodalRCNN, RandomInitWarning
    from training.model.config import ModelConfig

    if args.checkpoint:
        model, config = model_from_checkpoint(args.checkpoint)
        metadata, source = metadata_from_config(config), args.checkpoint
    else:
        overrides = _overrides(args.set)
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomInitWarning)
            model = AmodalRCNN(ModelConfig.from_dict({**ModelConfig().to_dict(), **overrides})).eval()
        metadata = ModelMetadata(train_image_size=model.config.image_size)
        source = f"random-init ModelConfig {overrides or '(defaults)'}"
    budgets = [parse_budget(b) for b in args.budget]  # all parsed (and checked) before any export
    if budgets:
        source += ", budgets " + ", ".join(f"{n} {b.to_dict()}" for n, b in zip(args.budget, budgets))
    return model, metadata, source, budgets


def _export_budgets(model, metadata, tmp: Path, args: argparse.Namespace, sizes, budgets) -> dict[str, Path]:
    """{"fp32[ budget]": path, "int8[ budget]": path, ...}: one export (and quantisation) per budget."""
    from training.export.budget import apply_budget

    if not budgets:
        return _export_variants(model, metadata, tmp, args, sizes, "")
    models: dict[str, Path] = {}
    for name, budget in zip(args.budget, budgets):
        apply_budget(model, budget)
        sub = tmp / f"budget{len(models)}"
        sub.mkdir()
        suffix = f" {name}" if len(budgets) > 1 else ""
        models.update(_export_variants(model, metadata, sub, args, sizes, suffix))
    return models


def _export_variants(
    model, metadata, tmp: Path, args: argparse.Namespace, sizes, suffix: str
) -> dict[str, Path]:
    """{"fp32<suffix>": path[, "int8<suffix>": path]} exported (and quantised) into `tmp`."""
    from training.export import export_model

    paths = {f"fp32{suffix}": tmp / "model.onnx"}
    t0 = time.perf_counter()
    export_model(model, paths[f"fp32{suffix}"], model.config.image_size, metadata, verify=False)
    print(f"export{suffix}: {time.perf_counter() - t0:.1f} s")
    if args.int8:
        from mtl_grasp.runtime.preprocess import prepare
        from training.export.parity import synthetic_frame
        from training.export.quantize import CalibrationFrame, calibration_frames, quantize_int8

        if args.calibration:
            frames = calibration_frames(args.calibration, args.calibration_frames, keep_aspect=True)
        else:  # synthetic frames of the benchmark sizes, seeds other than the timed frame's
            frames = []
            for i in range(args.calibration_frames):
                x = prepare(*synthetic_frame(*sizes[i % len(sizes)], seed=100 + i))
                frames.append(CalibrationFrame(x.rgb, x.depth))
        t0 = time.perf_counter()
        paths[f"int8{suffix}"] = quantize_int8(paths[f"fp32{suffix}"], tmp / "model_int8.onnx", frames)
        print(f"quantise (INT8 QDQ, {len(frames)} calibration frames): {time.perf_counter() - t0:.1f} s")
    return paths


def _providers(args: argparse.Namespace) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if args.providers != "all":
        wanted = [p.strip() for p in args.providers.split(",")]
    return [p for p in wanted if p in available or p.lower() in ("cpu", "cuda", "tensorrt")]


def _paths_for_size(model, models: dict[str, Path], h: int, w: int, args) -> dict[str, Callable[[], float]]:
    from mtl_grasp.runtime import Detector
    from training.export.parity import synthetic_frame

    rgb, depth = synthetic_frame(h, w, seed=0)
    paths: dict[str, Callable[[], float]] = {}
    if not args.no_eager:
        paths[EAGER] = _eager_call(model, rgb, depth, args)
    session = _overrides(args.session, "--session")
    session.setdefault("intra_op_threads", args.threads)
    variants = {"": session}
    for item in args.compare_session:
        variants[f" [{item}]"] = {**session, **_overrides(item.split(";"), "--compare-session")}
    for provider in _providers(args):
        for kind, path in models.items():
            for label, options in variants.items():
                det = Detector(
                    path, providers=provider, score_threshold=args.score_threshold, fp16=args.fp16,
                    session=options, warmup=(h, w), inference_size=args.inference_size,
                )  # fmt: skip
                name = det.providers[0].replace("ExecutionProvider", "")
                paths[f"runtime {name} {kind}{label}"] = _runtime_call(det, rgb, depth)
    return paths


def _print_size(h: int, w: int, paths, totals, nets, cpus) -> None:
    names = list(paths)
    base_eager = EAGER if EAGER in paths else None
    base_fp32 = next((n for n in names if n.startswith("runtime") and " fp32" in n), names[0])
    for name in names:
        p50, p95 = percentiles(totals[name])
        cpu50 = percentiles(cpus[name])[0]
        vs_eager = f"{p50 / percentiles(totals[base_eager])[0]:6.2f}" if base_eager else f"{'-':>6}"
        vs_fp32 = p50 / percentiles(totals[base_fp32])[0]
        print(
            f"{h:>4}x{w:<4} {name:<44} {p50:8.1f} {p95:8.1f} {percentiles(nets[name])[0]:8.1f} "
            f"{vs_eager} {vs_fp32:6.2f} {cpu50:8.1f}"
        )


def _profile(models: dict[str, Path], sizes, args: argparse.Namespace) -> None:
    from mtl_grasp.runtime.preprocess import prepare
    from training.bench.runtime_profile import format_profile, profile_model
    from training.export.parity import synthetic_frame

    session = _overrides(args.session, "--session")
    session.setdefault("intra_op_threads", args.threads)
    for h, w in sizes:
        x = prepare(*synthetic_frame(h, w, seed=0))
        for kind, path in models.items():
            profile = profile_model(path, x.rgb, x.depth, runs=max(1, min(args.iters, 3)), session=session)
            print("\n" + "\n".join(format_profile(profile, f"{h}x{w} {kind}")))


def run(args: argparse.Namespace) -> int:
    import onnxruntime as ort
    import torch

    sizes = _parse_sizes(args.sizes)
    _check_args(args)
    torch.set_num_threads(args.threads)
    model, metadata, source, budgets = _build_model(args)
    print(f"model: {source}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, threads={args.threads}; iters={args.iters}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = _export_budgets(model, metadata, Path(tmp), args, sizes, budgets)
        header = (
            f"{'size':>9} {'path':<44} {'p50 ms':>8} {'p95 ms':>8} {'net p50':>8} {'/eager':>6} "
            f"{'/fp32':>6} {'cpu p50':>8}"
        )
        print(header)
        print("-" * len(header))
        for h, w in sizes:
            paths = _paths_for_size(model, models, h, w, args)
            _print_size(h, w, paths, *_measure(paths, args.iters, args.warmup))
        if args.profile:
            _profile(models, sizes, args)
    print(
        "ratios of p50 wall time (end to end) to PyTorch eager and to the float32 runtime; net = network "
        "only (forward_export / session.run); cpu = process CPU time per call (robust to other load; GPU "
        f"time not included). load average at the end {os.getloadavg()[0]:.1f}"
    )
    return 0
