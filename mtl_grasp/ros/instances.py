"""Detections (mtl_grasp.runtime) <-> mtl_grasp_msgs/InstanceArray, without DDS.

Masks travel cropped to the tight bounding box of their pixels as mono8 images (0 / 255) with a
sensor_msgs/RegionOfInterest giving the crop's offset, so a frame of 20 small objects costs a few KB
instead of 20 full-resolution planes, and `instance_masks` restores the full planes exactly.

Boxes use pixel-edge coordinates: a mask occupying columns 3..5 has x1 = 3, x2 = 6.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from mtl_grasp.ros.images import fill_image, image_to_array
from mtl_grasp.ros.messages import INSTANCE, INSTANCE_ARRAY, MessageFactory, rclpy_factory

if TYPE_CHECKING:
    from mtl_grasp.geometry import FrameGeometry


class DetectionsLike(Protocol):
    """The fields of mtl_grasp.runtime.Detections this module reads (see docs/architecture.md)."""

    boxes: np.ndarray  # [N, 4] float32 amodal x1, y1, x2, y2
    scores: np.ndarray  # [N]
    labels: np.ndarray  # [N] int64, 1-based into class_names
    class_names: list[str]
    visible_masks: np.ndarray  # [N, H, W] bool
    amodal_masks: np.ndarray  # [N, H, W] bool
    occlusion: np.ndarray  # [N] float32 probability


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight pixel-edge box (x1, y1, x2, y2) of a 2-D boolean mask, or None when it is empty."""
    if mask.dtype == bool and mask.flags.c_contiguous and mask.shape[1] % 8 == 0:
        rows = cast(np.ndarray, mask.view(np.uint64).any(axis=1))  # 8 pixels per test
    else:
        rows = cast(np.ndarray, mask.any(axis=1))
    y1 = int(rows.argmax())  # first True (argmax is cheaper than flatnonzero on short vectors)
    if not rows[y1]:
        return None
    y2 = rows.size - int(rows[::-1].argmax())
    cols = cast(np.ndarray, mask[y1:y2].any(axis=0))  # only the occupied rows
    return int(cols.argmax()), y1, cols.size - int(cols[::-1].argmax()), y2


Box = tuple[int, int, int, int]


BOX_MARGIN_PX = 2


def _window(box: list[float], height: int, width: int, margin: int) -> tuple[int, int, int, int]:
    x1 = min(max(math.floor(box[0]) - margin, 0), width)
    y1 = min(max(math.floor(box[1]) - margin, 0), height)
    x2 = min(max(math.ceil(box[2]) + margin, 0), width)
    y2 = min(max(math.ceil(box[3]) + margin, 0), height)
    return x1, y1, x2, y2


def mask_boxes(
    det: DetectionsLike, n: int, margin: int = BOX_MARGIN_PX
) -> list[tuple[Box | None, Box | None]]:
    """(visible, amodal) tight boxes of the first `n` instances' masks, computed once per frame and
    shared by every output.

    Masks are searched only inside their amodal box grown by `margin` pixels: an amodal box bounds
    the whole object, and mtl_grasp.runtime pastes both masks within 1 px of it. Scanning whole
    640x480 planes instead would cost more than everything else the node does per frame.
    """
    out: list[tuple[Box | None, Box | None]] = []
    if n == 0:
        return out
    height, width = det.visible_masks.shape[1:]
    all_boxes = np.asarray(det.boxes, np.float64)[:n].tolist()
    for i in range(n):
        if not all(math.isfinite(v) for v in all_boxes[i]):
            out.append((None, None))  # such a box has no pasted mask pixels either
            continue
        x1, y1, x2, y2 = _window(all_boxes[i], height, width, margin)
        pair = []
        for masks in (det.visible_masks, det.amodal_masks):
            b = mask_bbox(np.asarray(masks[i][y1:y2, x1:x2], bool)) if x2 > x1 and y2 > y1 else None
            pair.append(None if b is None else (b[0] + x1, b[1] + y1, b[2] + x1, b[3] + y1))
        out.append((pair[0], pair[1]))
    return out


def _crop(mask: np.ndarray, box: tuple[int, int, int, int] | None, header: Any, roi: Any, img: Any) -> None:
    """Fill `roi` with `box` and `img` with the mono8 crop; an empty mask gives a 0x0 image."""
    img.header = header
    img.encoding = "mono8"
    if box is None:
        return
    x1, y1, x2, y2 = box
    roi.x_offset, roi.y_offset, roi.width, roi.height = x1, y1, x2 - x1, y2 - y1
    fill_image(img, mask[y1:y2, x1:x2].view(np.uint8) * np.uint8(255), "mono8")


def occluded_rate(
    visible: np.ndarray, amodal: np.ndarray, amodal_box: tuple[int, int, int, int] | None = None
) -> float:
    """1 - |visible & amodal| / |amodal| of one instance's masks (0 when the amodal mask is empty).

    `amodal_box` (the tight box of `amodal`, from mask_bbox) restricts the counting to it.
    """
    if amodal_box is not None:
        x1, y1, x2, y2 = amodal_box
        visible, amodal = visible[y1:y2, x1:x2], amodal[y1:y2, x1:x2]
    area = int(np.count_nonzero(amodal))
    if area == 0:
        return 0.0
    return float(max(0.0, 1.0 - np.count_nonzero(visible & amodal) / area))


def detections_to_instance_array(
    det: DetectionsLike,
    header: Any,
    image_size: tuple[int, int],
    occlusion_threshold: float = 0.5,
    max_instances: int | None = None,
    boxes: list[tuple[Box | None, Box | None]] | None = None,
    geometry: FrameGeometry | None = None,
    factory: MessageFactory | None = None,
) -> Any:
    """Build a mtl_grasp_msgs/InstanceArray from runtime detections (highest scores first).

    Args:
        det: runtime output on a frame of `image_size` = (height, width).
        header: the input RGB header, copied unchanged into the array and every mask image.
        occlusion_threshold: `occluded` is `occlusion >= occlusion_threshold`.
        max_instances: keep at most this many (the detector sorts by score); None keeps all.
        boxes: `mask_boxes(det, n)` if already computed.
        geometry: the frame's 3-D pick candidates (mtl_grasp.ros.candidates.frame_geometry); None
            marks every 3-D field invalid and leaves pick_order empty.
        factory: builds empty messages by type name (default: the rclpy message classes; the
            offline bag tools pass rosbags' types).
    """
    factory = factory or rclpy_factory
    height, width = image_size
    n = len(det.scores)
    if max_instances is not None:
        n = min(n, int(max_instances))
    if n and tuple(det.visible_masks.shape[1:]) != (height, width):
        raise ValueError(
            f"det: masks are {tuple(det.visible_masks.shape[1:])} but the image is {(height, width)}"
        )
    if boxes is None:
        boxes = mask_boxes(det, n)
    out = factory(INSTANCE_ARRAY)
    out.header = header
    out.image_height, out.image_width = int(height), int(width)
    instances = [
        _instance(det, i, boxes[i], header, occlusion_threshold, geometry, factory) for i in range(n)
    ]
    out.instances = instances
    out.camera_info_valid = bool(geometry is not None and geometry.intrinsics is not None)
    out.pick_order = [i + 1 for i in geometry.order] if geometry is not None else []
    return out


def _instance(
    det: DetectionsLike,
    i: int,
    boxes: tuple[Box | None, Box | None],
    header: Any,
    occlusion_threshold: float,
    geometry: FrameGeometry | None,
    factory: MessageFactory,
) -> Any:
    """The Instance message of detection `i` (id i + 1), masks cropped to their `boxes`."""
    inst = factory(INSTANCE)
    label = int(det.labels[i])
    inst.id = i + 1
    inst.class_id = label
    inst.class_name = det.class_names[label - 1] if 1 <= label <= len(det.class_names) else ""
    inst.score = float(det.scores[i])
    inst.amodal_box = [float(v) for v in det.boxes[i]]
    visible = np.asarray(det.visible_masks[i], dtype=bool)
    amodal = np.asarray(det.amodal_masks[i], dtype=bool)
    vbox, abox = boxes
    _crop(visible, vbox, header, inst.visible_roi, inst.visible_mask)
    inst.visible_box = [float(v) for v in vbox] if vbox is not None else [0.0] * 4
    _crop(amodal, abox, header, inst.amodal_roi, inst.amodal_mask)
    inst.occlusion_probability = float(det.occlusion[i])
    inst.occluded = bool(det.occlusion[i] >= occlusion_threshold)
    inst.occluded_rate = occluded_rate(visible, amodal, abox) if abox is not None else 0.0
    if geometry is not None:
        _fill_geometry(inst, geometry, i)
    return inst


def _fill_geometry(inst: Any, geometry: FrameGeometry, i: int) -> None:
    """The 3-D fields of instance `i`; invalid ones stay 0 with their *_valid flag false."""
    p = geometry.points[i]
    inst.valid_depth_fraction = float(p.valid_fraction)
    if p.position is not None:
        inst.position_valid = True
        inst.position.x, inst.position.y, inst.position.z = (float(v) for v in p.position)
    if p.normal is not None:
        inst.normal_valid = True
        inst.normal.x, inst.normal.y, inst.normal.z = (float(v) for v in p.normal)
    if i in geometry.order:
        inst.pick_rank = geometry.order.index(i) + 1


def _uncrop(img: Any, roi: Any, height: int, width: int, name: str) -> np.ndarray:
    full = np.zeros((height, width), dtype=bool)
    if img.width == 0 or img.height == 0:
        return full
    crop = image_to_array(img, name) > 0
    y, x = int(roi.y_offset), int(roi.x_offset)
    if crop.shape != (roi.height, roi.width) or y + crop.shape[0] > height or x + crop.shape[1] > width:
        raise ValueError(
            f"{name}: crop {crop.shape[::-1]} at ({x}, {y}) does not fit roi "
            f"{(roi.width, roi.height)} inside a {width}x{height} image"
        )
    full[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    return full


def instance_masks(inst: Any, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution (visible, amodal) boolean masks of one received Instance."""
    return (
        _uncrop(inst.visible_mask, inst.visible_roi, height, width, f"instance {inst.id} visible_mask"),
        _uncrop(inst.amodal_mask, inst.amodal_roi, height, width, f"instance {inst.id} amodal_mask"),
    )
