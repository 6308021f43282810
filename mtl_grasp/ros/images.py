"""sensor_msgs/Image <-> numpy without cv_bridge (pure functions, no DDS).

The conversions honour row padding (`step`) and `is_bigendian`, and never assign an ndarray to
`msg.data` (rclpy iterates element-wise then; `tobytes()` is ~300x faster).

Depth units follow depth_image_proc / REP 118: `16UC1` and `mono16` are millimetres with 0 invalid,
`32FC1` is metres with non-finite values invalid. Every in-memory depth returned here is float32
metres with 0 marking an invalid pixel, as everywhere in mtl_grasp.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# encoding -> (dtype, channels). Only what the node accepts or publishes.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
DEPTH_UNITS = ("auto", "mm", "m")


class ImageFormatError(ValueError):
    """An Image message that cannot be converted (bad encoding, size, step or data length)."""


def image_to_array(msg: Any, name: str = "image") -> np.ndarray:
    """View the pixels of a sensor_msgs/Image as a native-byte-order array `H x W` or `H x W x C`.

    The result may be a view into `msg.data`: copy it before keeping it beyond the message's life.
    Raises ImageFormatError naming `name` for an unsupported encoding or inconsistent geometry.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageFormatError(
            f"{name}: unsupported encoding {encoding!r}; expected one of {sorted(ENCODINGS)}"
        )
    dtype, channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"{name}: empty image ({width}x{height}); expected width, height > 0")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(
            f"{name}: step {step} is smaller than width*channels*bytes = {row_bytes} for {encoding}"
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * height:
        raise ImageFormatError(
            f"{name}: data has {buf.size} bytes; expected step*height = {step}*{height} = {step * height}"
        )
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if dtype.itemsize == 1:
        arr = rows.reshape(height, width, channels)
    else:
        # A padded row slice is not contiguous; view() needs a contiguous last axis, which it has.
        order = dtype.newbyteorder(">" if msg.is_bigendian else "<")
        arr = np.ascontiguousarray(rows).view(order).reshape(height, width, channels)
        if arr.dtype != dtype:
            arr = arr.astype(dtype)  # to native byte order (NumPy 2 has no ndarray.newbyteorder)
    return arr[:, :, 0] if channels == 1 else arr


def color_to_rgb(msg: Any, name: str = "rgb") -> np.ndarray:
    """An RGB-ish Image message as a contiguous `H x W x 3` uint8 RGB array (a copy)."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ImageFormatError(
            f"{name}: unsupported colour encoding {msg.encoding!r}; expected one of {list(COLOR_ENCODINGS)}"
        )
    arr = image_to_array(msg, name)
    if msg.encoding == "rgb8":
        return np.array(arr, order="C")
    if msg.encoding == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    if msg.encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))  # mono8


def depth_to_metres(msg: Any, depth_unit: str = "auto", name: str = "depth") -> np.ndarray:
    """A depth Image message as float32 metres `H x W` with 0 for invalid pixels (a copy).

    `depth_unit` "auto" uses the encoding's convention (16UC1/mono16 mm, 32FC1 m); "mm" or "m"
    overrides it for cameras that label their depth differently. Non-finite and negative values
    become 0 (invalid), so NaN holes never reach the model.
    """
    if depth_unit not in DEPTH_UNITS:
        raise ValueError(f"depth_unit: expected one of {list(DEPTH_UNITS)}, got {depth_unit!r}")
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageFormatError(
            f"{name}: unsupported depth encoding {msg.encoding!r}; expected one of {list(DEPTH_ENCODINGS)}"
        )
    arr = image_to_array(msg, name)
    unit = depth_unit if depth_unit != "auto" else ("m" if msg.encoding == "32FC1" else "mm")
    depth = arr.astype(np.float32)  # always a copy
    if unit == "mm":
        depth *= np.float32(0.001)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def array_to_image(arr: np.ndarray, encoding: str, header: Any = None, msg_type: Any = None) -> Any:
    """A numpy array as a new sensor_msgs/Image with a tight step and native byte order.

    `header` is assigned as is (pass the input header to propagate stamp and frame_id).
    """
    if msg_type is None:
        from sensor_msgs.msg import Image  # import on use keeps this module ROS-free

        msg_type = Image
    return fill_image(msg_type(), arr, encoding, header)


def fill_image(msg: Any, arr: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Write `arr` into an existing Image message (e.g. one embedded in another message); return it."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding: expected one of {sorted(ENCODINGS)}, got {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    shape_ok = (arr.ndim == 2 and channels == 1) or (arr.ndim == 3 and arr.shape[2] == channels)
    if not shape_ok:
        raise ValueError(
            f"arr: encoding {encoding} needs shape (H, W{', ' + str(channels) if channels > 1 else ''}), "
            f"got {arr.shape}"
        )
    if arr.dtype != dtype:
        raise ValueError(f"arr: encoding {encoding} needs dtype {dtype}, got {arr.dtype}")
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = int(arr.shape[1] * channels * dtype.itemsize)
    msg.data = np.ascontiguousarray(arr).tobytes()  # never the ndarray itself: rclpy copies it per element
    return msg
