"""`Detector`: an exported mtl_grasp ONNX model behind a numpy-in, numpy-out call."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mtl_grasp.contract import (
    DEPTH_MEAN_M,
    INPUT_DEPTH,
    INPUT_NAMES,
    INPUT_RGB,
    META_QUANTIZATION,
    OUTPUT_NAMES,
    ModelMetadata,
)
from mtl_grasp.runtime.detections import Detections, Timings
from mtl_grasp.runtime.postprocess import decode
from mtl_grasp.runtime.preprocess import NetworkInput, prepare
from mtl_grasp.runtime.providers import TENSORRT, ProviderSpec, resolve_providers
from mtl_grasp.runtime.session import SessionConfig

log = logging.getLogger(__name__)

# Below this many pixels per side the deepest FPN level (stride 64) would be empty.
MIN_INPUT_SIDE = 32


def read_metadata(model_path: str | os.PathLike) -> ModelMetadata:
    """Read and validate the mtl_grasp metadata of an ONNX file without keeping a session."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only reading
    session = _open_session(Path(model_path), ["CPUExecutionProvider"], options)
    return _metadata(session, Path(model_path))


def _open_session(
    path: Path, providers: list[ProviderSpec], options: ort.SessionOptions
) -> ort.InferenceSession:
    if not path.exists():
        raise ValueError(
            f"model_path: no such file {str(path)!r}; export one with `python -m training export`"
        )
    if not path.is_file():
        raise ValueError(f"model_path: {str(path)!r} is not a file")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt protobufs
        error = exc
    names = [p if isinstance(p, str) else p[0] for p in providers]
    if names != ["CPUExecutionProvider"]:
        # Tell a bad file from a provider that cannot start (bad options, missing GPU libraries).
        try:
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception:
            pass
        else:
            raise ValueError(
                f"providers: onnxruntime cannot start {names} for {str(path)!r} (the model loads on CPU): "
                f"{error}"
            ) from error
    raise ValueError(f"model_path: {str(path)!r} is not a loadable ONNX model: {error}") from error


def _metadata(session: ort.InferenceSession, path: Path) -> ModelMetadata:
    source = f"model {str(path)!r}"
    meta = ModelMetadata.from_dict(session.get_modelmeta().custom_metadata_map, source=source)
    meta.check_compatible(source=source)
    inputs = sorted(i.name for i in session.get_inputs())
    if inputs != sorted(INPUT_NAMES):
        raise ValueError(f"{source}: inputs {inputs} but the contract expects {sorted(INPUT_NAMES)}")
    outputs = {o.name for o in session.get_outputs()}
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise ValueError(f"{source}: outputs lack {missing} required by the contract")
    return meta


def _check_inference_size(inference_size: object) -> None:
    if not (
        inference_size is None
        or inference_size == "train"
        or (isinstance(inference_size, int | np.integer) and inference_size >= MIN_INPUT_SIDE)
    ):
        raise ValueError(
            f"inference_size: expected None, 'train' or an int >= {MIN_INPUT_SIDE}, got {inference_size!r}"
        )


def _session_config(
    session: SessionConfig | Mapping[str, object] | None, num_threads: int | None
) -> SessionConfig:
    """`session` with `num_threads` (the older, shorter spelling of intra_op_threads) applied."""
    config = SessionConfig.from_value(session)
    if num_threads is not None:
        if not isinstance(num_threads, int | np.integer) or num_threads < 1:
            raise ValueError(f"num_threads: expected None or an int >= 1, got {num_threads!r}")
        config = replace(config, intra_op_threads=int(num_threads))
    return config


def quantization_of(model_path: str | os.PathLike) -> str:
    """The quantisation recorded in a model's metadata ("none" for float models or unreadable files)."""
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception:  # the real open reports a bad file with a proper message
        return "none"
    return session.get_modelmeta().custom_metadata_map.get(META_QUANTIZATION, "none")


def _check_unit_interval(name: str, value: float, open_low: bool = False) -> float:
    ok = (value > 0.0 if open_low else value >= 0.0) and value <= 1.0
    if not ok:
        raise ValueError(f"{name}: expected a number in {'(' if open_low else '['}0, 1], got {value!r}")
    return float(value)


class Detector:
    """Runs an exported model on RGB-D frames: `Detector(path)(rgb, depth) -> Detections`.

    Args:
        model_path: ONNX file written by `python -m training export`.
        providers: None/"auto" (TensorRT -> CUDA -> CPU among those installed), a name
            ("cpu", "cuda", "tensorrt" or a full onnxruntime name) or a list of names /
            (name, options) pairs. The choice and the reasons are logged at INFO.
        score_threshold: instances below this score are dropped (and never pasted).
        max_instances: at most this many instances, best first.
        mask_threshold: probability at which a pixel belongs to a mask.
        inference_size: None runs at the camera resolution; an int resizes each frame so its longer
            side has this many pixels (aspect kept) and maps boxes and masks back; "train" uses the
            training image size from the model's metadata.
        keep_aspect: with `inference_size`: True keeps the aspect ratio (longer side = size); False
            squashes every frame to size x size like the training data loader, which reproduces the
            checkpoint's evaluation on non-square images.
        allow_all_invalid_depth: accept frames whose depth has no valid pixel (see
            `preprocess.depth_to_metres`); by default they raise ValueError.
        fp16: TensorRT only: build fp16 engines.
        trt_cache_dir: TensorRT engine cache (default ~/.cache/mtl_grasp/tensorrt).
        num_threads: onnxruntime intra-op threads (None: onnxruntime's default); overrides
            `session.intra_op_threads`.
        session: onnxruntime session options (`SessionConfig`, a mapping of its fields, or None for
            the defaults: full graph optimisation, memory arena on); see docs/runtime.md.
        int8: TensorRT only: build INT8 engines from the model's QDQ nodes (None: when the model's
            metadata says it is quantised, see `training.export.quantize`).
        warmup: run one dummy frame at load (True: training size, or a (height, width) camera size)
            so the first real frame does not pay for allocation / engine building.

    All bad input raises ValueError naming the argument, what was expected and what was found.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        providers: str | Sequence[ProviderSpec] | None = None,
        score_threshold: float = 0.5,
        max_instances: int = 100,
        mask_threshold: float = 0.5,
        inference_size: int | str | None = None,
        keep_aspect: bool = True,
        allow_all_invalid_depth: bool = False,
        fp16: bool = False,
        trt_cache_dir: str | os.PathLike | None = None,
        num_threads: int | None = None,
        warmup: bool | Sequence[int] = True,
        session: SessionConfig | Mapping[str, object] | None = None,
        int8: bool | None = None,
    ) -> None:
        self.score_threshold = _check_unit_interval("score_threshold", score_threshold)
        self.mask_threshold = _check_unit_interval("mask_threshold", mask_threshold, open_low=True)
        if not isinstance(max_instances, int | np.integer) or max_instances < 1:
            raise ValueError(f"max_instances: expected a positive int, got {max_instances!r}")
        self.max_instances = int(max_instances)
        _check_inference_size(inference_size)
        self.allow_all_invalid_depth = bool(allow_all_invalid_depth)
        self.keep_aspect = bool(keep_aspect)
        self.model_path = Path(model_path)
        self.session_config = _session_config(session, num_threads)
        self._open(providers, fp16, int8, trt_cache_dir)
        # "train": the size the network was trained at (the training data is resized to it, so this
        # reproduces the checkpoint's evaluation geometry for square images).
        self.inference_size: int | None = (
            self.metadata.train_image_size
            if inference_size == "train"
            else (None if inference_size is None else int(inference_size))
        )
        if isinstance(warmup, tuple | list):
            if len(warmup) != 2 or any(not isinstance(v, int | np.integer) or v < 1 for v in warmup):
                raise ValueError(f"warmup: expected a bool or (height, width) ints, got {warmup!r}")
            self.warmup(int(warmup[0]), int(warmup[1]))
        elif warmup:
            size = self.metadata.train_image_size
            self.warmup(size, size)

    def _open(
        self,
        providers: str | Sequence[ProviderSpec] | None,
        fp16: bool,
        int8: bool | None,
        trt_cache_dir: str | os.PathLike | None,
    ) -> None:
        """Choose providers, open the session, read metadata and log what the session runs on."""
        available = ort.get_available_providers()
        if int8 is None:  # TensorRT INT8 for quantised (QDQ) models, detected from the file
            int8 = TENSORRT in available and quantization_of(self.model_path) != "none"
        choice = resolve_providers(providers, available, fp16, trt_cache_dir, int8=int8)
        for note in choice.notes:
            log.info("mtl_grasp.runtime: %s", note)
        self._session = _open_session(self.model_path, choice.providers, self.session_config.to_ort())
        self._run_options = ort.RunOptions()  # terminate() sets its flag (see there)
        self.metadata = _metadata(self._session, self.model_path)
        self.quantization = self._session.get_modelmeta().custom_metadata_map.get(META_QUANTIZATION, "none")
        self.providers: list[str] = list(self._session.get_providers())
        # A provider can be installed yet fail to initialise (missing CUDA/TensorRT libraries);
        # onnxruntime then silently drops it, so say so.
        for name in choice.names:
            if name not in self.providers:
                log.warning(
                    "mtl_grasp.runtime: %s was requested but failed to initialise; falling back", name
                )
        log.info(
            "mtl_grasp.runtime: %s (%s) runs on %s", self.model_path.name, self.quantization, self.providers
        )

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.class_names)

    def warmup(self, height: int, width: int) -> None:
        """Run one synthetic frame of this size (allocations, TensorRT engine build)."""
        rgb = np.full((height, width, 3), 127, np.uint8)
        depth = np.full((height, width), DEPTH_MEAN_M, np.float32)
        self(rgb, depth)

    def infer(self, inputs: NetworkInput) -> dict[str, np.ndarray]:
        """Run the network on prepared inputs; returns the raw contract outputs by name."""
        h, w = inputs.rgb.shape[2:]
        if min(h, w) < MIN_INPUT_SIDE:
            raise ValueError(
                f"rgb: network input {h}x{w} is smaller than {MIN_INPUT_SIDE} pixels per side "
                "(raise inference_size or use a larger image)"
            )
        feeds = {INPUT_RGB: inputs.rgb, INPUT_DEPTH: inputs.depth}
        values = self._session.run(list(OUTPUT_NAMES), feeds, self._run_options)
        return dict(zip(OUTPUT_NAMES, values))

    def __call__(self, rgb: np.ndarray, depth: np.ndarray) -> Detections:
        """Detect instances in one frame.

        Args:
            rgb: uint8 H x W x 3, RGB order.
            depth: H x W registered to `rgb`: uint16 millimetres or float32 metres (0/NaN/inf/<=0
                invalid).
        """
        t0 = time.perf_counter()
        inputs = prepare(rgb, depth, self.inference_size, self.allow_all_invalid_depth, self.keep_aspect)
        t1 = time.perf_counter()
        out = self.infer(inputs)
        t2 = time.perf_counter()
        det = decode(
            out,
            inputs.height,
            inputs.width,
            self.class_names,
            scale_x=inputs.scale_x,
            scale_y=inputs.scale_y,
            score_threshold=self.score_threshold,
            max_instances=self.max_instances,
            mask_threshold=self.mask_threshold,
            source=f"model {str(self.model_path)!r}",
        )
        t3 = time.perf_counter()
        det.timings = Timings(pre_ms=(t1 - t0) * 1e3, infer_ms=(t2 - t1) * 1e3, post_ms=(t3 - t2) * 1e3)
        return det

    def terminate(self) -> None:
        """Abort a running inference (called from another thread, e.g. at node shutdown).

        Sets onnxruntime's `RunOptions.terminate`: the session stops between kernels and the running
        call (and every later one: this detector is finished) raises. Added for bounded shutdown of
        the ROS node (mtl_grasp.ros.perception_node), which must not wait seconds for a frame.
        """
        self._run_options.terminate = True
