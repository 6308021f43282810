"""Camera images -> the network inputs of mtl_grasp/contract.py (numpy/opencv only).

The model normalises its own inputs, so pre-processing is only: validate, convert depth to metres
with 0 marking invalid pixels, optionally resize (aspect kept) and lay out as float32 NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Depth dtypes a camera driver produces: 16-bit millimetres (RealSense, Azure Kinect, ROS "16UC1")
# or floating-point metres (ROS "32FC1").
_FLOAT_DEPTH = (np.float16, np.float32, np.float64)
MILLIMETRES_PER_METRE = 1000.0


@dataclass(frozen=True)
class NetworkInput:
    """The tensors fed to the network and how to map its outputs back to the camera image.

    `scale_x`/`scale_y` are network-input pixels per camera pixel along each axis (1.0 at native
    resolution); boxes from the network are divided by them.
    """

    rgb: np.ndarray  # float32 [1, 3, h, w] in [0, 1]
    depth: np.ndarray  # float32 [1, 1, h, w] metres, 0 = invalid
    height: int  # camera image size
    width: int
    scale_x: float = 1.0
    scale_y: float = 1.0


def check_rgb(rgb: object) -> np.ndarray:
    """Return `rgb` if it is a non-empty uint8 H x W x 3 array; raise ValueError naming the problem."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"rgb: expected a numpy uint8 array H x W x 3, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected shape H x W x 3 (RGB channel order), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected dtype uint8 (0..255), got {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb: empty image of shape {rgb.shape}")
    return rgb


def depth_to_metres(depth: object, allow_all_invalid: bool = False) -> np.ndarray:
    """Convert a depth image to float32 metres with 0 marking invalid pixels.

    Accepts H x W (or H x W x 1) uint16 millimetres (0 = no return) or float metres, where NaN,
    +-inf and values <= 0 are invalid. A frame without a single valid pixel raises ValueError
    unless `allow_all_invalid`: the network was trained on scenes with depth, so such a frame almost
    always means a broken camera pipeline (wrong topic, encoding or exposure), and silently
    detecting on RGB alone would hide it from the robot.
    """
    if not isinstance(depth, np.ndarray):
        raise ValueError(
            f"depth: expected a numpy array H x W (uint16 millimetres or float32 metres), "
            f"got {type(depth).__name__}"
        )
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError(f"depth: expected shape H x W, got shape {depth.shape}")
    if depth.shape[0] == 0 or depth.shape[1] == 0:
        raise ValueError(f"depth: empty image of shape {depth.shape}")
    if depth.dtype == np.uint16:
        metres = depth.astype(np.float32) * np.float32(1.0 / MILLIMETRES_PER_METRE)
    elif depth.dtype in _FLOAT_DEPTH:
        metres = depth.astype(np.float32, copy=True)
        # One pass: NaN compares False, so `> 0` also rejects NaN; inf is rejected explicitly.
        valid = (metres > 0) & (metres < np.inf)
        metres[~valid] = 0.0
    else:
        raise ValueError(f"depth: expected dtype uint16 (millimetres) or float32 (metres), got {depth.dtype}")
    if not allow_all_invalid and not metres.any():
        raise ValueError(
            "depth: no valid pixel (all zero, NaN, inf or negative); check the depth stream, or pass "
            "allow_all_invalid_depth=True to run on such frames"
        )
    return metres


def resized_shape(
    height: int, width: int, inference_size: int | None, keep_aspect: bool = True
) -> tuple[int, int]:
    """Network input size for a camera image.

    None: the camera size. Otherwise the longer side becomes `inference_size` (aspect kept), or, with
    `keep_aspect=False`, the image is squashed to `inference_size` x `inference_size` exactly as the
    training data loader resizes (training/data), which reproduces the checkpoint's evaluation.
    """
    if inference_size is None:
        return height, width
    if not keep_aspect:
        return inference_size, inference_size
    scale = inference_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def prepare(
    rgb: object,
    depth: object,
    inference_size: int | None = None,
    allow_all_invalid_depth: bool = False,
    keep_aspect: bool = True,
) -> NetworkInput:
    """Validate a camera frame and build the network inputs (see `NetworkInput`, `resized_shape`)."""
    rgb = check_rgb(rgb)
    metres = depth_to_metres(depth, allow_all_invalid=allow_all_invalid_depth)
    height, width = rgb.shape[:2]
    if metres.shape != (height, width):
        raise ValueError(
            f"depth: size {metres.shape[0]}x{metres.shape[1]} (HxW) differs from rgb size "
            f"{height}x{width}; register depth to the colour image first"
        )
    net_h, net_w = resized_shape(height, width, inference_size, keep_aspect)
    if (net_h, net_w) != (height, width):
        shrink = net_h * net_w < height * width
        rgb = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        # Nearest neighbour: interpolating would blend valid depths with the 0 of invalid pixels.
        metres = cv2.resize(metres, (net_w, net_h), interpolation=cv2.INTER_NEAREST)
    # uint8 HWC -> float32 NCHW in [0, 1] in one vectorised pass.
    rgb_t = np.empty((1, 3, net_h, net_w), dtype=np.float32)
    np.multiply(rgb.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=rgb_t[0], casting="unsafe")
    return NetworkInput(
        rgb=rgb_t,
        depth=metres.reshape(1, 1, net_h, net_w),
        height=height,
        width=width,
        scale_x=net_w / width,
        scale_y=net_h / height,
    )
