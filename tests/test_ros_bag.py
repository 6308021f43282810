"""rosbag2 in and out without ROS (mtl_grasp.bag, pure-Python rosbags): message round trips, the
offline run against the Detector's direct output, broken bags, and the console entry.

Real rosbags writer/reader (mcap and sqlite3), real onnxruntime with the contract test model, real
synthetic MetaGraspNet data; the rclpy cross-check is skipped where rclpy is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("onnx")

from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402

from mtl_grasp.bag.dataset import (  # noqa: E402
    bag_predictions,
    evaluate_bag,
    read_instance_arrays,
    write_dataset_bag,
)
from mtl_grasp.bag.offline import DEFAULT_TOPICS, main, run_offline  # noqa: E402
from mtl_grasp.bag.types import BagTypes  # noqa: E402
from mtl_grasp.data.reader import discover_views, load_view  # noqa: E402
from mtl_grasp.data.synth import generate_dataset  # noqa: E402
from mtl_grasp.ros.camera import camera_info_for  # noqa: E402
from mtl_grasp.ros.candidates import frame_geometry, intrinsics_from_camera_info  # noqa: E402
from mtl_grasp.ros.images import array_to_image  # noqa: E402
from mtl_grasp.ros.instances import instance_masks, mask_boxes  # noqa: E402
from mtl_grasp.ros.messages import CAMERA_INFO, IMAGE, INSTANCE_ARRAY  # noqa: E402
from mtl_grasp.ros.parameters import detector_kwargs, load_parameter_files  # noqa: E402
from mtl_grasp.ros.pipeline import FramePipeline  # noqa: E402
from mtl_grasp.runtime import Detector  # noqa: E402
from training.contract_model import write_contract_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STORAGES = ("mcap", "sqlite3")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mgn")
    generate_dataset(root, scenes=2, image_size=64, seed=5)
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_contract_model(tmp_path_factory.mktemp("model") / "contract.onnx", n=5)


@pytest.fixture(scope="module")
def params(model_path) -> dict:
    return load_parameter_files([], {"model_path": str(model_path), "providers": ["cpu"],
                                     "score_threshold": 0.3, "inference_size": 0})


@pytest.fixture(scope="module")
def types() -> BagTypes:
    return BagTypes()


def _frame_messages(types: BagTypes, sample, stamp_s: int):
    def image():
        return types.new(IMAGE)

    rgb = array_to_image(np.ascontiguousarray(sample.rgb), "rgb8", msg_type=image)
    depth_m = np.where(sample.depth > 0, sample.depth, np.nan).astype(np.float32)
    depth = array_to_image(depth_m, "32FC1", msg_type=image)
    info = camera_info_for(sample, "cam", types.new)
    for m in (rgb, depth, info):
        m.header.stamp.sec, m.header.frame_id = stamp_s, "cam"
    return rgb, depth, info


def _assert_arrays_equal(a, b, h, w) -> None:
    """Every field of two InstanceArrays (any message family) is equal, masks included."""
    assert (a.header.stamp.sec, a.header.stamp.nanosec, a.header.frame_id) == (
        b.header.stamp.sec, b.header.stamp.nanosec, b.header.frame_id)
    assert list(a.pick_order) == list(b.pick_order) and bool(a.camera_info_valid) == bool(b.camera_info_valid)
    assert len(a.instances) == len(b.instances) > 0
    for x, y in zip(a.instances, b.instances):
        for name in ("id", "class_id", "class_name", "score", "occlusion_probability", "occluded",
                     "occluded_rate", "position_valid", "normal_valid", "valid_depth_fraction", "pick_rank"):
            assert getattr(x, name) == pytest.approx(getattr(y, name)), name
        np.testing.assert_allclose(x.amodal_box, y.amodal_box)
        np.testing.assert_allclose(x.visible_box, y.visible_box)
        for v in ("position", "normal"):
            assert [getattr(x, v).x, getattr(x, v).y, getattr(x, v).z] == pytest.approx(
                [getattr(y, v).x, getattr(y, v).y, getattr(y, v).z])
        for mx, my in zip(instance_masks(x, h, w), instance_masks(y, h, w)):
            np.testing.assert_array_equal(mx, my)


@pytest.mark.parametrize("storage", STORAGES)
def test_custom_messages_round_trip_through_a_bag(tmp_path, dataset, params, types, storage):
    sample = load_view(discover_views(dataset)[0])
    detector = Detector(**detector_kwargs(params.__getitem__))
    pipeline = FramePipeline(detector, params.__getitem__, types.new)
    rgb, depth, info = _frame_messages(types, sample, 7)
    frame = pipeline.run(rgb, depth, info)
    msg, poses = pipeline.instances(frame), pipeline.candidates(frame)
    assert msg.camera_info_valid and len(msg.pick_order) > 0
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(tmp_path / "bag", version=9, storage_plugin=plugin) as writer:
        c1 = writer.add_connection("/i", INSTANCE_ARRAY, typestore=types.store)
        c2 = writer.add_connection("/c", "geometry_msgs/msg/PoseArray", typestore=types.store)
        writer.write(c1, 7_000_000_000, types.serialize(msg, INSTANCE_ARRAY))
        writer.write(c2, 7_000_000_000, types.serialize(poses, "geometry_msgs/msg/PoseArray"))
    with Reader(tmp_path / "bag") as reader:
        got = {c.topic: types.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()}
    h, w = sample.rgb.shape[:2]
    _assert_arrays_equal(got["/i"], msg, h, w)
    assert len(got["/c"].poses) == len(msg.pick_order)
    for pose, inst_id in zip(got["/c"].poses, msg.pick_order):
        inst = msg.instances[inst_id - 1]
        assert [pose.position.x, pose.position.y, pose.position.z] == pytest.approx(
            [inst.position.x, inst.position.y, inst.position.z])


def test_bag_messages_are_the_cdr_of_the_node_messages(dataset, params, types):
    """What `ros2 bag record` stores from the node (rclpy's CDR) reads back with rosbags, and the
    offline builder's CDR reads back in rclpy: the two message families are wire-compatible."""
    pytest.importorskip("rclpy")
    pytest.importorskip("mtl_grasp_msgs.msg")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, Image

    from mtl_grasp_msgs.msg import InstanceArray

    sample = load_view(discover_views(dataset)[1])
    detector = Detector(**detector_kwargs(params.__getitem__))
    rgb_r = array_to_image(np.ascontiguousarray(sample.rgb), "rgb8", msg_type=Image)
    depth_r = array_to_image(sample.depth.astype(np.float32), "32FC1", msg_type=Image)
    info_r = camera_info_for(sample, "cam")
    assert isinstance(info_r, CameraInfo)
    for m in (rgb_r, depth_r):
        m.header.stamp.sec, m.header.frame_id = 9, "cam"
    node_msg = FramePipeline(detector, params.__getitem__).instances(
        FramePipeline(detector, params.__getitem__).run(rgb_r, depth_r, info_r))
    bag_msg = types.deserialize(serialize_message(node_msg), INSTANCE_ARRAY)
    h, w = sample.rgb.shape[:2]
    _assert_arrays_equal(bag_msg, node_msg, h, w)
    back = deserialize_message(types.serialize(bag_msg, INSTANCE_ARRAY), InstanceArray)
    _assert_arrays_equal(back, node_msg, h, w)


@pytest.mark.parametrize("storage", STORAGES)
def test_offline_output_equals_the_detector(tmp_path, dataset, params, storage):
    cam = tmp_path / "camera"
    assert write_dataset_bag(dataset, cam, dict(DEFAULT_TOPICS), rate_hz=10, storage=storage) == 2
    summary = run_offline(cam, tmp_path / "out", params, storage=storage)
    assert (summary.pairs, summary.processed, summary.bad_frames, summary.frames_without_3d) == (2, 2, 0, 0)
    assert summary.dropped_unpaired == {"rgb": 0, "depth": 0} and not summary.problems
    arrays = read_instance_arrays(tmp_path / "out")
    detector = Detector(**detector_kwargs(params.__getitem__))
    for msg, ref in zip(arrays, discover_views(dataset)):
        sample = load_view(ref)
        det = detector(sample.rgb, sample.depth)
        h, w = sample.rgb.shape[:2]
        assert len(msg.instances) == len(det.scores) > 0
        info = camera_info_for(sample, "cam", BagTypes().new)
        intr, _ = intrinsics_from_camera_info(info, h, w)
        n = len(det.scores)
        geometry = frame_geometry(det, n, sample.depth, intr, mask_boxes(det, n), 0.5)
        assert [i - 1 for i in msg.pick_order] == geometry.order
        for k, inst in enumerate(msg.instances):
            np.testing.assert_allclose(inst.amodal_box, det.boxes[k], rtol=1e-6)
            assert inst.score == pytest.approx(float(det.scores[k]), rel=1e-6)
            vis, amo = instance_masks(inst, h, w)
            np.testing.assert_array_equal(vis, det.visible_masks[k])
            np.testing.assert_array_equal(amo, det.amodal_masks[k])
            p = geometry.points[k]
            assert inst.position_valid == p.valid
            if p.valid:
                got = [inst.position.x, inst.position.y, inst.position.z]
                assert got == pytest.approx(p.position.tolist())
    with Reader(tmp_path / "out") as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts == {"/perception_node/instances": 2, "/perception_node/overlay": 2,
                      "/perception_node/candidates": 2}


def test_evaluation_through_the_bag_equals_the_direct_evaluation(tmp_path, dataset, model_path):
    from mtl_grasp.runtime.evaluate import EVAL_SCORE_THRESHOLD, predict_dataset

    params = load_parameter_files([], {"model_path": str(model_path), "providers": ["cpu"],
                                       "score_threshold": EVAL_SCORE_THRESHOLD, "inference_size": 0})
    write_dataset_bag(dataset, tmp_path / "cam", dict(DEFAULT_TOPICS))
    run_offline(tmp_path / "cam", tmp_path / "out", params)
    detector = Detector(model_path, providers="cpu", score_threshold=EVAL_SCORE_THRESHOLD)
    direct = predict_dataset(detector, dataset)
    via_bag = bag_predictions(tmp_path / "out", tmp_path / "cam")
    assert sorted(via_bag) == sorted(direct)
    for image_id, pred in direct.items():
        for key in ("boxes", "scores", "labels", "visible_masks", "amodal_masks", "occlusion"):
            np.testing.assert_allclose(via_bag[image_id][key], pred[key], rtol=1e-6, err_msg=key)
    from mtl_grasp.data.coco import build_coco
    from mtl_grasp.evaluation import evaluate

    assert evaluate_bag(tmp_path / "out", tmp_path / "cam", dataset) == evaluate(build_coco(dataset), direct)


def _write_bag(path: Path, types: BagTypes, frames: list[tuple[str, int]], sample) -> None:
    """A bag of (role, stamp_s) messages written in the given order (log time = order)."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {role: writer.add_connection(DEFAULT_TOPICS[role], t, typestore=types.store)
                 for role, t in (("rgb", IMAGE), ("depth", IMAGE), ("info", CAMERA_INFO))}
        for n, (role, stamp) in enumerate(frames):
            msg = dict(zip(("rgb", "depth", "info"), _frame_messages(types, sample, stamp)))[role]
            typename = CAMERA_INFO if role == "info" else IMAGE
            writer.write(conns[role], (n + 1) * 1_000_000, types.serialize(msg, typename))


def test_missing_and_out_of_order_topics_give_a_summary_not_a_crash(tmp_path, dataset, params, types):
    sample = load_view(discover_views(dataset)[0])
    # no depth topic at all
    _write_bag(tmp_path / "nodepth", types, [("rgb", 1), ("rgb", 2)], sample)
    s = run_offline(tmp_path / "nodepth", tmp_path / "o1", params)
    assert s.processed == 0 and "'/camera/depth/image' (depth, required) has no messages" in s.format()
    assert not (tmp_path / "o1").exists()
    # stamps out of order (2 after 3: still pairs; 4 after 5 was paired: dropped), no camera_info
    order = [("rgb", 1), ("depth", 1), ("rgb", 3), ("rgb", 2), ("depth", 2), ("depth", 3), ("rgb", 5),
             ("depth", 5), ("rgb", 4), ("depth", 4)]
    _write_bag(tmp_path / "shuffled", types, order, sample)
    s = run_offline(tmp_path / "shuffled", tmp_path / "o2", params)
    text = s.format()
    assert s.out_of_order == {"rgb": 2, "depth": 1}
    assert s.pairs == s.processed == 4  # stamps 1, 2, 3 and 5
    assert s.dropped_unpaired == {"rgb": 1, "depth": 1}
    assert [m.header.stamp.sec for m in read_instance_arrays(tmp_path / "o2")] == [1, 2, 3, 5]
    assert s.frames_without_3d == 4 and "camera_info' (info, optional" in text
    assert all(not i.position_valid for m in read_instance_arrays(tmp_path / "o2") for i in m.instances)
    # stamps that never pair
    _write_bag(tmp_path / "apart", types, [("rgb", 1), ("depth", 2), ("rgb", 3), ("depth", 4)], sample)
    s = run_offline(tmp_path / "apart", tmp_path / "o3", params)
    assert s.processed == 0 and "no rgb/depth pair within slop" in s.format()


def test_console_entry_runs_without_rclpy_or_torch(tmp_path, dataset, model_path, capsys):
    assert main(["--dataset", str(dataset), "--out", str(tmp_path / "cam"), "--storage", "sqlite3"]) == 0
    blocker = (
        "import sys\n"
        "for m in ('rclpy', 'torch', 'torchvision', 'training', 'mtl_grasp_msgs'): sys.modules[m] = None\n"
        "from mtl_grasp.bag.offline import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["--bag", str(tmp_path / "cam"), "--out", str(tmp_path / "out"), "--model", str(model_path),
            "-p", "providers=[cpu]", "-p", "inference_size=0", "--no-progress"]
    done = subprocess.run([sys.executable, "-c", blocker, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pairs: 2, processed: 2, bad frames: 0" in done.stdout
    assert main(["--bag", str(tmp_path / "cam"), "--out", str(tmp_path / "x"), "-p", "slop=-1"]) == 2
    assert "slop" in capsys.readouterr().err
    assert main(["--bag", str(tmp_path / "nope"), "--out", str(tmp_path / "y")]) == 2
    assert main(["--bag", str(tmp_path / "cam"), "--out", str(tmp_path / "out")]) == 2  # exists already
