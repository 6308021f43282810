"""DDS-free tests of the node's pure functions: Image <-> numpy, Detections -> messages, views."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mtl_grasp_msgs.msg")

from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from mtl_grasp.ros.images import (  # noqa: E402
    ImageFormatError,
    array_to_image,
    color_to_rgb,
    depth_to_metres,
    image_to_array,
)
from mtl_grasp.ros.instances import (  # noqa: E402
    detections_to_instance_array,
    instance_masks,
    mask_bbox,
    occluded_rate,
)
from mtl_grasp.ros.visualization import (  # noqa: E402
    OCCLUDED_COLOR,
    VISIBLE_COLOR,
    instance_markers,
    overlay_image,
    visible_label_image,
)
from mtl_grasp.runtime import Detections  # noqa: E402

H, W = 48, 64


def _raw_image(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image built byte by byte (independently of array_to_image), with `pad` bytes per row."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    rows = arr.reshape(arr.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=bigendian)
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    return msg


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_color_encodings_give_rgb(rgb, encoding, pad):
    if encoding == "rgb8":
        src = rgb
    elif encoding == "bgr8":
        src = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        src = np.dstack([rgb, np.full((H, W), 7, np.uint8)])
    elif encoding == "bgra8":
        src = np.dstack([rgb[:, :, ::-1], np.full((H, W), 7, np.uint8)])
    else:
        src = rgb[:, :, 0]
    out = color_to_rgb(_raw_image(src, encoding, pad=pad))
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_depth_16bit_is_millimetres(encoding, pad, bigendian):
    mm = np.random.default_rng(1).integers(0, 3000, (H, W)).astype(np.uint16)
    mm[0, :5] = 0  # invalid
    depth = depth_to_metres(_raw_image(mm, encoding, pad=pad, bigendian=bigendian))
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_allclose(depth, mm.astype(np.float32) / 1000.0, rtol=1e-6)
    assert (depth[0, :5] == 0).all()


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_32f_is_metres_and_non_finite_becomes_zero(bigendian):
    m = np.random.default_rng(2).uniform(0.3, 1.5, (H, W)).astype(np.float32)
    m[1, 1], m[2, 2], m[3, 3], m[4, 4] = np.nan, np.inf, -np.inf, -0.5
    depth = depth_to_metres(_raw_image(m, "32FC1", pad=4, bigendian=bigendian))
    ok = np.isfinite(m) & (m >= 0)
    np.testing.assert_array_equal(depth[ok], m[ok])
    assert (depth[~ok] == 0).all()


def test_depth_unit_override():
    mm_as_float = np.full((H, W), 650.0, np.float32)  # a camera that publishes 32FC1 millimetres
    assert depth_to_metres(_raw_image(mm_as_float, "32FC1"), "mm")[0, 0] == pytest.approx(0.65)
    metres_as_u16 = np.full((H, W), 2, np.uint16)
    assert depth_to_metres(_raw_image(metres_as_u16, "16UC1"), "m")[0, 0] == 2.0
    with pytest.raises(ValueError, match="depth_unit"):
        depth_to_metres(_raw_image(metres_as_u16, "16UC1"), "cm")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _raw_image(np.zeros((H, W, 3), np.uint8), "yuv422"), "unsupported encoding"),
        (lambda: Image(height=0, width=0, encoding="rgb8", step=0), "empty image"),
        (lambda: Image(height=H, width=W, encoding="rgb8", step=W, data=bytes(W * H)), "step"),
        (lambda: Image(height=H, width=W, encoding="rgb8", step=3 * W, data=bytes(10)), "data has 10 bytes"),
    ],
)
def test_bad_images_are_rejected_with_a_reason(make, match):
    with pytest.raises(ImageFormatError, match=match):
        image_to_array(make(), "rgb")


def test_wrong_kind_of_encoding_is_rejected():
    with pytest.raises(ImageFormatError, match="depth encoding 'rgb8'"):
        depth_to_metres(_raw_image(np.zeros((H, W, 3), np.uint8), "rgb8"))
    with pytest.raises(ImageFormatError, match="colour encoding '32FC1'"):
        color_to_rgb(_raw_image(np.zeros((H, W), np.float32), "32FC1"))


@pytest.mark.parametrize(
    ("encoding", "arr"),
    [
        ("rgb8", np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)),
        ("mono16", np.arange(H * W, dtype=np.uint16).reshape(H, W)),
        ("32FC1", np.linspace(0, 2, H * W, dtype=np.float32).reshape(H, W)),
    ],
)
def test_array_to_image_round_trip_and_header(encoding, arr):
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    msg = array_to_image(arr, encoding, header)
    assert msg.is_bigendian == (sys.byteorder == "big")
    assert msg.step == W * arr.itemsize * (3 if arr.ndim == 3 else 1)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 34
    np.testing.assert_array_equal(image_to_array(msg), arr)
    with pytest.raises(ValueError, match="needs dtype"):
        array_to_image(arr.astype(np.float64), encoding)


# ---- Detections -> messages -----------------------------------------------------------------
def _detections() -> Detections:
    vis = np.zeros((3, H, W), bool)
    amo = np.zeros((3, H, W), bool)
    amo[0, 5:15, 4:20] = True
    vis[0, 5:15, 4:12] = True  # half hidden
    amo[1, 20:40, 30:60] = True
    vis[1] = amo[1]  # fully visible
    amo[2, 2:6, 50:58] = True  # fully hidden: empty visible mask
    return Detections(
        boxes=np.array([[4, 5, 20, 15], [30, 20, 60, 40], [50, 2, 58, 6]], np.float32),
        scores=np.array([0.9, 0.8, 0.6], np.float32),
        labels=np.array([1, 2, 1], np.int64),
        class_names=["box", "bottle"],
        visible_masks=vis,
        amodal_masks=amo,
        occlusion=np.array([0.7, 0.1, 0.95], np.float32),
    )


def test_mask_bbox_is_tight_pixel_edges():
    m = np.zeros((H, W), bool)
    assert mask_bbox(m) is None
    m[3, 7] = m[10, 2] = True
    assert mask_bbox(m) == (2, 3, 8, 11)
    assert mask_bbox(np.asfortranarray(m)) == (2, 3, 8, 11)  # non-contiguous path agrees
    assert mask_bbox(m[:, :61]) == (2, 3, 8, 11)  # width not a multiple of 8


def test_instance_array_round_trips_masks_and_fields():
    det = _detections()
    header = Header(frame_id="cam")
    header.stamp.sec = 5
    msg = detections_to_instance_array(det, header, (H, W), occlusion_threshold=0.5)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 5
    assert (msg.image_height, msg.image_width) == (H, W)
    assert [i.id for i in msg.instances] == [1, 2, 3]
    assert [i.class_name for i in msg.instances] == ["box", "bottle", "box"]
    assert [i.class_id for i in msg.instances] == [1, 2, 1]
    assert [i.occluded for i in msg.instances] == [True, False, True]
    first = msg.instances[0]
    assert list(first.visible_box) == [4.0, 5.0, 12.0, 15.0]
    assert (first.visible_roi.x_offset, first.visible_roi.y_offset) == (4, 5)
    vm = first.visible_mask
    assert (vm.width, vm.height, vm.encoding) == (8, 10, "mono8")
    assert set(np.frombuffer(bytes(first.visible_mask.data), np.uint8)) == {255}
    assert first.occluded_rate == pytest.approx(0.5)
    assert first.visible_mask.header.frame_id == "cam"
    for k, inst in enumerate(msg.instances):
        vis, amo = instance_masks(inst, H, W)
        np.testing.assert_array_equal(vis, det.visible_masks[k])
        np.testing.assert_array_equal(amo, det.amodal_masks[k])
        np.testing.assert_allclose(inst.amodal_box, det.boxes[k])
        assert inst.score == pytest.approx(float(det.scores[k]))
    hidden = msg.instances[2]
    assert hidden.visible_mask.width == 0 and list(hidden.visible_box) == [0.0] * 4
    assert hidden.occluded_rate == pytest.approx(1.0)
    assert len(detections_to_instance_array(det, header, (H, W), max_instances=2).instances) == 2


def test_instance_array_rejects_masks_of_another_size():
    with pytest.raises(ValueError, match="masks are"):
        detections_to_instance_array(_detections(), Header(), (H + 1, W))


def test_occluded_rate():
    a = np.zeros((4, 4), bool)
    assert occluded_rate(a, a) == 0.0
    a[:2] = True
    v = np.zeros_like(a)
    v[0] = True
    assert occluded_rate(v, a) == pytest.approx(0.5)
    assert occluded_rate(v, a, mask_bbox(a)) == pytest.approx(0.5)


def test_visible_label_image_higher_score_wins():
    det = _detections()
    det.visible_masks[1, 5:15, 4:12] = True  # overlap with instance 1 (higher score)
    labels = visible_label_image(det, 3, H, W)
    assert labels.dtype == np.uint16
    assert labels[6, 5] == 1 and labels[25, 40] == 2 and labels[0, 0] == 0
    assert 3 not in labels  # fully hidden instance has no visible pixel
    assert set(np.unique(visible_label_image(det, 1, H, W))) == {0, 1}


def test_overlay_colours_by_occlusion_and_keeps_input():
    det = _detections()
    rgb = np.full((H, W, 3), 100, np.uint8)
    out = overlay_image(rgb, det, 3, occlusion_threshold=0.5)
    assert (rgb == 100).all()  # input untouched
    assert out.shape == rgb.shape and out.dtype == np.uint8

    def dominant(y, x):
        return int(np.argmax(out[y, x].astype(int) - 100))

    assert dominant(9, 7) == int(np.argmax(OCCLUDED_COLOR))  # instance 1 occluded: orange-ish
    assert dominant(30, 45) == int(np.argmax(VISIBLE_COLOR))  # instance 2 visible: green
    assert (out[45, 2] == 100).all()  # background unchanged
    hidden = out[9, 16].astype(int) - 100  # amodal-only part is shaded less than the visible part
    visible = out[9, 7].astype(int) - 100
    assert 0 < np.abs(hidden).sum() < np.abs(visible).sum()


def test_markers_back_project_boxes_at_median_depth():
    from visualization_msgs.msg import Marker

    det = _detections()
    depth = np.full((H, W), 0.8, np.float32)
    depth[:, :25] = 0.5
    k = [100.0, 0, 32.0, 0, 100.0, 24.0, 0, 0, 1]
    header = Header(frame_id="cam")
    arr = instance_markers(det, 3, depth, k, header)
    assert arr.markers[0].action == Marker.DELETEALL
    boxes = [m for m in arr.markers if m.type == Marker.LINE_STRIP]
    texts = [m for m in arr.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts) == 3
    first = boxes[0]
    assert first.header.frame_id == "cam"
    assert first.points[0].z == pytest.approx(0.5)
    assert first.points[0].x == pytest.approx((4 - 32) * 0.5 / 100)
    assert first.points[2].y == pytest.approx((15 - 24) * 0.5 / 100)
    assert "box" in texts[0].text and "occluded" in texts[0].text
    depth[:] = 0  # no valid depth: no markers but the DELETEALL
    assert len(instance_markers(det, 3, depth, k, header).markers) == 1
    with pytest.raises(ValueError, match="focal"):
        instance_markers(det, 3, depth, [0.0] * 9, header)
