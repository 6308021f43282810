"""Torch-free inference: an exported ONNX model -> `Detections` (numpy, opencv, onnxruntime only).

    from mtl_grasp.runtime import Detector
    detector = Detector("model.onnx", score_threshold=0.5)
    detections = detector(rgb_uint8_hwc, depth_metres_or_uint16_mm)

See docs/runtime.md.
"""

from mtl_grasp.runtime.detections import Detections, Timings
from mtl_grasp.runtime.detector import Detector, read_metadata
from mtl_grasp.runtime.postprocess import decode, paste_masks
from mtl_grasp.runtime.preprocess import depth_to_metres
from mtl_grasp.runtime.providers import resolve_providers
from mtl_grasp.runtime.session import SessionConfig

__all__ = [
    "Detections",
    "Detector",
    "SessionConfig",
    "Timings",
    "decode",
    "depth_to_metres",
    "paste_masks",
    "read_metadata",
    "resolve_providers",
]
