"""Standard-message views of the detections for tools (RViz, rqt): pure functions, no DDS.

- `overlay_image`: the RGB frame with amodal boxes, visible masks filled and the hidden (amodal-only)
  part shaded; green = not occluded, orange = occluded.
- `visible_label_image`: uint16 image, 0 = background, k = instance id (k = index + 1); where
  predicted visible masks overlap the higher-scoring instance wins.
- `instance_markers`: a visualization_msgs/MarkerArray with one rectangle (amodal box back-projected
  at the instance's median visible depth) and one text per instance, in the camera optical frame.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from mtl_grasp.ros.instances import Box, DetectionsLike, mask_bbox, mask_boxes

# RGB colours (occlusion colour-coded)
VISIBLE_COLOR = (40, 220, 60)
OCCLUDED_COLOR = (255, 140, 0)
_FILL_ALPHA = 0.45
_HIDDEN_ALPHA = 0.2


def _color(occluded: bool) -> tuple[int, int, int]:
    return OCCLUDED_COLOR if occluded else VISIBLE_COLOR


def _blend(region: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float) -> None:
    """region[mask] = (1 - alpha) * region + alpha * color, in place (uint8, via cv2 on the crop)."""
    if mask.any():
        fill = np.empty_like(region)
        fill[:] = color
        mixed = cv2.addWeighted(region, 1.0 - alpha, fill, alpha, 0.0)
        np.copyto(region, mixed, where=mask[:, :, None])


def overlay_image(
    rgb: np.ndarray,
    det: DetectionsLike,
    n: int,
    occlusion_threshold: float = 0.5,
    boxes: list[tuple[Box | None, Box | None]] | None = None,
) -> np.ndarray:
    """Draw the first `n` detections on a copy of `rgb` (uint8 H x W x 3) and return it.

    `boxes` is `mask_boxes(det, n)` if already computed.
    """
    boxes = mask_boxes(det, n) if boxes is None else boxes
    out = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    for i in reversed(range(n)):  # best instance drawn last, i.e. on top
        occluded = bool(det.occlusion[i] >= occlusion_threshold)
        color = _color(occluded)
        vis = np.asarray(det.visible_masks[i], dtype=bool)
        amo = np.asarray(det.amodal_masks[i], dtype=bool)
        box = _union_box(*boxes[i])
        if box is not None:  # blend only inside the masks' box: cheap at 640x480
            x1, y1, x2, y2 = box
            region = out[y1:y2, x1:x2]
            vis_c, amo_c = vis[y1:y2, x1:x2], amo[y1:y2, x1:x2]
            _blend(region, amo_c & ~vis_c, color, _HIDDEN_ALPHA)
            _blend(region, vis_c, color, _FILL_ALPHA)
        x1, y1, x2, y2 = (int(round(float(v))) for v in det.boxes[i])
        cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, 1)
        label = f"{i + 1}:{float(det.scores[i]):.2f}{' occ' if occluded else ''}"
        cv2.putText(out, label, (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1)
    return out


def _union_box(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def visible_label_image(
    det: DetectionsLike,
    n: int,
    height: int,
    width: int,
    boxes: list[tuple[Box | None, Box | None]] | None = None,
) -> np.ndarray:
    """uint16 label image of the first `n` visible masks (0 background, id = index + 1)."""
    labels = np.zeros((height, width), dtype=np.uint16)
    for i in reversed(range(n)):  # higher score painted last wins overlaps
        vis = np.asarray(det.visible_masks[i], dtype=bool)
        box = mask_bbox(vis) if boxes is None else boxes[i][0]
        if box is not None:
            x1, y1, x2, y2 = box
            labels[y1:y2, x1:x2][vis[y1:y2, x1:x2]] = i + 1
    return labels


def median_depth(depth_m: np.ndarray, mask: np.ndarray, box: Box | None = None) -> float | None:
    """Median of the valid (> 0) depth under `mask`, metres; None when no valid pixel.

    `box` (the mask's tight box) restricts the lookup to it, which is much cheaper on large frames.
    """
    if box is not None:
        x1, y1, x2, y2 = box
        depth_m, mask = depth_m[y1:y2, x1:x2], mask[y1:y2, x1:x2]
    values = depth_m[mask]
    values = values[values > 0]
    return float(np.median(values)) if values.size else None


def instance_markers(
    det: DetectionsLike,
    n: int,
    depth_m: np.ndarray,
    k: Any,
    header: Any,
    occlusion_threshold: float = 0.5,
    namespace: str = "mtl_grasp",
    boxes: list[tuple[Box | None, Box | None]] | None = None,
) -> Any:
    """MarkerArray: a DELETEALL, then per instance a LINE_STRIP box and a TEXT_VIEW_FACING label.

    `k` is the 3x3 intrinsic matrix (CameraInfo.k, row-major 9 values) of the RGB camera; depth is
    registered to it. Instances without valid depth under their visible (else amodal) mask get no
    marker.
    """
    from visualization_msgs.msg import Marker, MarkerArray

    boxes = mask_boxes(det, n) if boxes is None else boxes
    fx, cx, fy, cy = float(k[0]), float(k[2]), float(k[4]), float(k[5])
    if fx <= 0 or fy <= 0:
        raise ValueError(f"k: focal lengths must be positive, got fx={fx}, fy={fy}")
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.ns = namespace
    clear.action = Marker.DELETEALL
    markers = [clear]
    for i in range(n):
        vbox, abox = boxes[i]
        z = None if vbox is None else median_depth(depth_m, np.asarray(det.visible_masks[i], bool), vbox)
        if z is None and abox is not None:
            z = median_depth(depth_m, np.asarray(det.amodal_masks[i], bool), abox)
        if z is None:
            continue
        markers += _instance_pair(det, i, z, (fx, cx, fy, cy), header, occlusion_threshold, namespace)
    out.markers = markers
    return out


def _instance_pair(
    det: DetectionsLike,
    i: int,
    z: float,
    intrinsics: tuple[float, float, float, float],
    header: Any,
    occlusion_threshold: float,
    namespace: str,
) -> list[Any]:
    """Detection `i`'s box (LINE_STRIP, id 2i) and label (TEXT_VIEW_FACING, id 2i+1) at depth z (m)."""
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker

    fx, cx, fy, cy = intrinsics
    occluded = bool(det.occlusion[i] >= occlusion_threshold)
    r, g, b = (c / 255.0 for c in _color(occluded))
    x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    box = Marker()
    box.header = header
    box.ns, box.id = namespace, 2 * i
    box.type, box.action = Marker.LINE_STRIP, Marker.ADD
    box.pose.orientation.w = 1.0
    box.scale.x = 0.003  # line width, metres
    box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, 1.0
    box.points = [Point(x=(u - cx) * z / fx, y=(v - cy) * z / fy, z=z) for u, v in corners]
    text = Marker()
    text.header = header
    text.ns, text.id = namespace, 2 * i + 1
    text.type, text.action = Marker.TEXT_VIEW_FACING, Marker.ADD
    text.pose.position.x = (x1 - cx) * z / fx
    text.pose.position.y = (y1 - cy) * z / fy - 0.01
    text.pose.position.z = z
    text.pose.orientation.w = 1.0
    text.scale.z = 0.02  # text height, metres
    text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
    label = int(det.labels[i])
    name = det.class_names[label - 1] if 1 <= label <= len(det.class_names) else ""
    text.text = f"{i + 1} {name} {float(det.scores[i]):.2f}{' occluded' if occluded else ''}"
    return [box, text]
