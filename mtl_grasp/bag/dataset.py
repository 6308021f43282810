"""MetaGraspNet-format folders as camera bags, and the detections of an output bag as predictions.

`write_dataset_bag` writes every view (real, simulated or synthetic) as one frame of rgb8 image,
depth (32FC1 metres or 16UC1 millimetres) and camera_info, all with the same header; stamps are
1 s + index / rate. The bag's custom metadata `mtl_grasp.image_ids` maps each stamp to the view's
COCO image id (mtl_grasp.data.coco), so `evaluate_bag` can score the InstanceArrays that
`perception_offline` wrote with mtl_grasp.evaluation, exactly as `python -m mtl_grasp.runtime.evaluate`
scores the Detector's direct output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mtl_grasp.bag.types import BagTypes, open_writer
from mtl_grasp.ros.camera import DEFAULT_FRAME_ID, camera_info_for, depth_message_array
from mtl_grasp.ros.images import array_to_image
from mtl_grasp.ros.messages import CAMERA_INFO, IMAGE, INSTANCE_ARRAY

IMAGE_IDS_KEY = "mtl_grasp.image_ids"
FIRST_STAMP_NS = 1_000_000_000


def write_dataset_bag(
    root: str | os.PathLike,
    out: str | os.PathLike,
    topics: dict[str, str],
    rate_hz: float = 5.0,
    storage: str = "mcap",
    depth_encoding: str = "32FC1",
    frame_id: str = DEFAULT_FRAME_ID,
) -> int:
    """Write the views of `root` as a camera bag at `out`; returns the number of frames.

    `topics` maps "rgb", "depth", "info" to topic names (perception_offline's defaults).
    """
    from mtl_grasp.data.reader import discover_views, load_view

    if not (rate_hz > 0 and np.isfinite(rate_hz)):
        raise ValueError(f"rate: expected a positive number of frames per second, got {rate_hz!r}")
    views = discover_views(Path(root), require_amodal=False)
    if not views:
        raise ValueError(f"dataset: no MetaGraspNet views (scene*/<v>.npz) under {str(root)!r}")
    types = BagTypes()
    writer = open_writer(out, storage)
    try:
        conns = {
            role: writer.add_connection(topics[role], typename, typestore=types.store)
            for role, typename in (("rgb", IMAGE), ("depth", IMAGE), ("info", CAMERA_INFO))
        }
        ids: dict[str, int] = {}
        for i, ref in enumerate(views):
            stamp = FIRST_STAMP_NS + int(round(i * 1e9 / rate_hz))
            msgs = _view_messages(load_view(ref), types, depth_encoding, frame_id, stamp)
            for role, (typename, msg) in msgs.items():
                writer.write(conns[role], stamp, types.serialize(msg, typename))
            ids[str(stamp)] = ref.image_id
        writer.set_custom_data(IMAGE_IDS_KEY, json.dumps(ids))
    finally:
        writer.close()
    return len(views)


def _view_messages(sample: Any, types: BagTypes, encoding: str, frame_id: str, stamp_ns: int) -> dict:
    def image() -> Any:
        return types.new(IMAGE)

    rgb = array_to_image(np.ascontiguousarray(sample.rgb), "rgb8", msg_type=image)
    depth = array_to_image(depth_message_array(sample.depth, encoding), encoding, msg_type=image)
    info = camera_info_for(sample, frame_id, types.new)
    for msg in (rgb, depth, info):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = frame_id
    # camera_info first: a reader that pairs on the depth message already has this frame's intrinsics
    return {"info": (CAMERA_INFO, info), "rgb": (IMAGE, rgb), "depth": (IMAGE, depth)}


def read_instance_arrays(bag: str | os.PathLike, topic: str = "/perception_node/instances") -> list[Any]:
    """Every InstanceArray on `topic` of an output bag, in log order."""
    from rosbags.rosbag2 import Reader

    types = BagTypes()
    with Reader(Path(bag)) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            have = [c.topic for c in reader.connections]
            raise ValueError(f"bag {str(bag)!r} has no topic {topic!r}; it has {have}")
        return [types.deserialize(raw, INSTANCE_ARRAY) for _, _, raw in reader.messages(connections=conns)]


def instance_array_prediction(msg: Any, class_names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The mtl_grasp.evaluation prediction dict (full-size bool masks) of one InstanceArray."""
    from mtl_grasp.ros.instances import instance_masks

    h, w = int(msg.image_height), int(msg.image_width)
    insts = list(msg.instances)
    masks = [instance_masks(i, h, w) for i in insts]
    return {
        "boxes": np.asarray([i.amodal_box for i in insts], np.float32).reshape(-1, 4),
        "scores": np.asarray([i.score for i in insts], np.float32),
        "labels": np.asarray([i.class_id for i in insts], np.int64),
        "visible_masks": np.asarray([m[0] for m in masks], bool).reshape(-1, h, w),
        "amodal_masks": np.asarray([m[1] for m in masks], bool).reshape(-1, h, w),
        "occlusion": np.asarray([i.occlusion_probability for i in insts], np.float32),
    }


def bag_predictions(out_bag: str | os.PathLike, camera_bag: str | os.PathLike) -> dict[int, dict]:
    """Predictions of an output bag keyed by COCO image id, via the camera bag's stamp -> id map."""
    import yaml

    from mtl_grasp.ros.sync import stamp_to_ns

    meta_file = Path(camera_bag) / "metadata.yaml"
    if not meta_file.is_file():
        raise ValueError(f"camera bag: no metadata.yaml in {str(camera_bag)!r}")
    info = yaml.safe_load(meta_file.read_text()).get("rosbag2_bagfile_information", {})
    custom = info.get("custom_data") or {}
    if IMAGE_IDS_KEY not in custom:
        raise ValueError(f"camera bag {str(camera_bag)!r} has no {IMAGE_IDS_KEY} (write it with --dataset)")
    ids = {int(k): v for k, v in json.loads(custom[IMAGE_IDS_KEY]).items()}
    arrays = read_instance_arrays(out_bag)
    return {ids[stamp_to_ns(m.header.stamp)]: instance_array_prediction(m) for m in arrays}


def evaluate_bag(out_bag: str | os.PathLike, camera_bag: str | os.PathLike, root: str | os.PathLike) -> dict:
    """COCO metrics of the output bag's detections against the ground truth of the dataset `root`.

    Views without an output (bad or dropped frames) count as views with no detection.
    """
    from mtl_grasp.data.coco import build_coco
    from mtl_grasp.evaluation import evaluate

    gt = build_coco(Path(root))
    predictions = bag_predictions(out_bag, camera_bag)
    types = BagTypes()  # one type store for every view without output
    for image in gt["images"]:
        if image["id"] not in predictions:
            h, w = image["height"], image["width"]
            predictions[image["id"]] = instance_array_prediction(_empty_array(types, h, w))
    return evaluate(gt, predictions)


def _empty_array(types: BagTypes, height: int, width: int) -> Any:
    msg = types.new(INSTANCE_ARRAY)
    msg.image_height, msg.image_width = height, width
    return msg
