"""The perception node's parameters: declared once from this table, defaults only in the YAML file.

Each parameter has a type, a description, an optional range (enforced by rclpy) and an optional
extra check (enforced by `validate`). Nothing here has a default value: the node loads
`config/perception.yaml` (the only place defaults live) before any user file, so a missing key is a
packaging bug reported by name instead of a silent fallback.

Parameters marked `configure_time` (model, providers) take effect when the model is next loaded
(activate); the others apply at once when changed at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_grasp.ros.images import DEPTH_UNITS

_ORT_PROVIDERS_AUTO = "auto"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ROS type name ("string", "double", "integer", "bool", "string_array")."""

    name: str
    type: str
    description: str
    range: tuple[float, float] | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error message or None
    configure_time: bool = False


def _check_depth_unit(v: Any) -> str | None:
    return None if v in DEPTH_UNITS else f"expected one of {list(DEPTH_UNITS)}, got {v!r}"


def _check_providers(v: Any) -> str | None:
    names = list(v)
    if not names:
        return "expected a non-empty list, e.g. ['auto'] or ['CUDAExecutionProvider', 'CPUExecutionProvider']"
    if names == [_ORT_PROVIDERS_AUTO]:
        return None
    import onnxruntime as ort  # only the list of names is used; availability is checked on configure

    from mtl_grasp.runtime.providers import ALIASES

    known = list(ALIASES) + list(ort.get_all_providers())
    unknown = [p for p in names if p not in known]
    if unknown:
        return f"unknown execution provider(s) {unknown}; expected ['auto'] or names from {known}"
    return None


def _check_inference_size(v: Any) -> str | None:
    from mtl_grasp.runtime.detector import MIN_INPUT_SIDE

    if int(v) in (-1, 0) or int(v) >= MIN_INPUT_SIDE:
        return None
    return f"expected -1 (training size), 0 (camera resolution) or >= {MIN_INPUT_SIDE} pixels, got {v}"


def _check_model_path(v: Any) -> str | None:
    return None if str(v).strip() else "expected the path of an exported .onnx model, got an empty string"


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "string", "exported ONNX model (python -m training export)",
              check=_check_model_path, configure_time=True),
    ParamSpec("providers", "string_array",
              "onnxruntime execution providers in order of preference, or ['auto'] for the runtime's "
              "default order (TensorRT, CUDA, CPU, whichever are available)",
              check=_check_providers, configure_time=True),
    ParamSpec("inference_size", "integer",
              "frames are resized (aspect kept) so their longer side is this many pixels before inference: "
              "-1 = the model's training size (from its metadata), 0 = the camera resolution",
              check=_check_inference_size, configure_time=True, range=(-1, 8192)),
    ParamSpec("score_threshold", "double", "minimum detection score", range=(0.0, 1.0)),
    ParamSpec("occlusion_threshold", "double", "an instance is flagged occluded when P(occluded) >= this",
              range=(0.0, 1.0)),
    ParamSpec("max_instances", "integer", "publish at most this many instances (highest scores)",
              range=(1, 1000)),
    ParamSpec("slop", "double", "maximum RGB-depth stamp difference of a pair, seconds", range=(0.0, 1.0)),
    ParamSpec("sync_queue_size", "integer", "unpaired messages kept per input stream", range=(1, 100)),
    ParamSpec("depth_unit", "string",
              "'auto' (16UC1/mono16 millimetres, 32FC1 metres) or 'mm' / 'm' to override",
              check=_check_depth_unit),
    ParamSpec("publish_overlay", "bool", "publish ~/overlay (rgb8 image with boxes and masks)"),
    ParamSpec("publish_markers", "bool", "publish ~/markers (needs rgb/camera_info)"),
    ParamSpec("publish_visible_labels", "bool", "publish ~/visible_labels (mono16, 0 = background)"),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)
BY_NAME = {p.name: p for p in PARAMETERS}


def validate(name: str, value: Any) -> str | None:
    """Check one value beyond what rclpy enforces; return an error naming the parameter, or None."""
    spec = BY_NAME.get(name)
    if spec is None:
        return None  # not ours (e.g. qos_overrides.*, use_sim_time)
    if spec.type == "double" and isinstance(value, float) and not math.isfinite(value):
        return f"{name}: expected a finite number, got {value!r}"
    if spec.check is not None:
        err = spec.check(value)
        if err:
            return f"{name}: {err}"
    return None


def packaged_config(name: str) -> Path:
    """config/<name> of the source tree, else of the installed package's share directory."""
    import sys

    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config" / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("mtl_grasp")) / "config" / name)
    except Exception:  # noqa: BLE001 - ament_index absent or package not installed the ROS way
        pass
    candidates.append(Path(sys.prefix) / "share" / "mtl_grasp" / "config" / name)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"config/{name} not found; looked in {[str(c) for c in candidates]}")


def default_params_file() -> Path:
    """config/perception.yaml of the source tree, else of the installed package share directory."""
    return packaged_config("perception.yaml")


def inference_size_argument(value: int) -> int | str | None:
    """Node parameter -> Detector argument: -1 = the model's training size, 0 = camera resolution."""
    return {-1: "train", 0: None}.get(int(value), int(value))


def detector_kwargs(param: Callable[[str], Any]) -> dict[str, Any]:
    """Keyword arguments of mtl_grasp.runtime.Detector from the parameters (node and offline tool)."""
    providers = list(param("providers"))
    return {
        "model_path": str(Path(param("model_path")).expanduser()),
        "providers": None if providers == [_ORT_PROVIDERS_AUTO] else providers,
        "score_threshold": float(param("score_threshold")),
        "max_instances": int(param("max_instances")),
        "inference_size": inference_size_argument(param("inference_size")),
    }


_PY_TYPES = {"string": (str,), "double": (float, int), "integer": (int,), "bool": (bool,)}


def _check_type(spec: ParamSpec, value: Any, source: str) -> Any:
    if spec.type == "string_array":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, _PY_TYPES[spec.type]) and not (
            isinstance(value, bool) and spec.type in ("double", "integer")
        )
    if not ok:
        raise ValueError(f"{spec.name}: expected {spec.type}, got {value!r} ({source})")
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ValueError(f"{spec.name}: expected a value in {list(spec.range)}, got {value!r} ({source})")
    return float(value) if spec.type == "double" else value


def load_parameter_files(paths: list[str | Path], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The node's parameters from ROS 2 parameter files, without rclpy (for the offline tools).

    Starts from config/perception.yaml (the defaults), then each file in order (its `/**` section and
    any node-name section), then `overrides`. Types, ranges and checks are those of the node; unknown
    keys (qos_overrides.*, use_sim_time) are ignored. Raises ValueError naming the parameter.
    """
    import yaml

    values: dict[str, Any] = {}
    for path in [default_params_file(), *paths]:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"params file: no such file {str(path)!r}")
        data = yaml.safe_load(path.read_text()) or {}
        for section in data.values():
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                for name, value in section["ros__parameters"].items():
                    if name in BY_NAME:
                        values[name] = _check_type(BY_NAME[name], value, str(path))
    for name, value in (overrides or {}).items():
        if name not in BY_NAME:
            raise ValueError(f"{name}: not a parameter of the node; expected one of {list(PARAMETER_NAMES)}")
        values[name] = _check_type(BY_NAME[name], value, "override")
    for name, value in values.items():
        err = validate(name, value)
        if err:
            raise ValueError(err)
    missing = [p.name for p in PARAMETERS if p.name not in values]
    if missing:
        raise ValueError(f"parameters {missing} have no value in {[str(p) for p in paths]}")
    return values
