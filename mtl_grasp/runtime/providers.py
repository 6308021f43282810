"""Choosing onnxruntime execution providers: TensorRT -> CUDA -> CPU by default, with reasons.

Kept free of onnxruntime sessions so the choice is a pure, testable function of what is installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
AUTO_ORDER = (TENSORRT, CUDA, CPU)
ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}

# Why a preferred provider is missing, for the log line (the usual cause on a robot).
_MISSING_HINT = {
    TENSORRT: "install onnxruntime-gpu built with TensorRT and the TensorRT libraries",
    CUDA: "install onnxruntime-gpu (the `onnxruntime` wheel is CPU-only) and a matching CUDA",
}

ProviderSpec = str | tuple[str, dict]


def default_trt_cache_dir() -> Path:
    """Where TensorRT engines are cached (building one takes minutes; reuse it across starts)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtl_grasp" / "tensorrt"


@dataclass
class ProviderChoice:
    """The providers to pass to onnxruntime, and one human-readable note per decision."""

    providers: list[ProviderSpec]
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p if isinstance(p, str) else p[0] for p in self.providers]


def tensorrt_options(fp16: bool, cache_dir: str | os.PathLike | None, int8: bool = False) -> dict:
    """TensorRT provider options: engine + timing cache on disk, fp16 / int8 engines when asked.

    `int8` is for quantised (QDQ) models: TensorRT takes the scales from their Q/DQ nodes (explicit
    quantisation), so no calibration table is needed.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_trt_cache_dir()
    return {
        "trt_fp16_enable": bool(fp16),
        "trt_int8_enable": bool(int8),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }


def resolve_providers(
    providers: str | Sequence[ProviderSpec] | None,
    available: Sequence[str],
    fp16: bool = False,
    trt_cache_dir: str | os.PathLike | None = None,
    int8: bool = False,
) -> ProviderChoice:
    """Turn the user's `providers` argument into an onnxruntime provider list.

    `None` or "auto": every provider of TensorRT -> CUDA -> CPU that `available` lists (CPU is always
    there), with a note for each skipped one. Otherwise a name ("cpu", "cuda", "tensorrt" or a full
    onnxruntime provider name) or a sequence of names / (name, options) pairs, each of which must be
    available, else ValueError naming it and what is available.
    """
    available = list(available)
    if providers is None or (isinstance(providers, str) and providers.lower() == "auto"):
        choice = ProviderChoice(providers=[])
        for name in AUTO_ORDER:
            if name in available:
                choice.providers.append(
                    (name, tensorrt_options(fp16, trt_cache_dir, int8)) if name == TENSORRT else name
                )
            else:
                choice.notes.append(f"{name} not available ({_MISSING_HINT.get(name, 'not installed')})")
        if CPU not in choice.names:  # onnxruntime always has CPU; guard against odd builds anyway
            choice.providers.append(CPU)
        return choice
    requested: Sequence[ProviderSpec] = [providers] if isinstance(providers, str) else providers
    if isinstance(requested, tuple) and len(requested) == 2 and isinstance(requested[1], dict):
        requested = [requested]  # a single (name, options) pair
    if len(requested) == 0:
        raise ValueError("providers: expected 'auto', a provider name or a non-empty list, got an empty list")
    choice = ProviderChoice(providers=[])
    for spec in requested:
        if isinstance(spec, str):
            name, options = ALIASES.get(spec.lower(), spec), None
        elif (
            isinstance(spec, tuple)
            and len(spec) == 2
            and isinstance(spec[0], str)
            and isinstance(spec[1], dict)
        ):
            name, options = ALIASES.get(spec[0].lower(), spec[0]), dict(spec[1])
        else:
            raise ValueError(f"providers: expected names or (name, options) pairs, got {spec!r}")
        if name not in available:
            raise ValueError(
                f"providers: {name} is not available in this onnxruntime; available: {available}"
            )
        if name == TENSORRT:
            options = {**tensorrt_options(fp16, trt_cache_dir, int8), **(options or {})}
        choice.providers.append((name, options) if options is not None else name)
    return choice
