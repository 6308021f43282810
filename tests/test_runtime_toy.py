"""A tiny hand-built ONNX graph that follows mtl_grasp/contract.py, for runtime tests that must not
depend on the real network (metadata and I/O errors, resizing maths, pre-processing units).

The graph outputs K fixed detections whose boxes are fractions of the input size (so they follow any
resize), scores = base_scores * max(rgb) (so rgb scaling reaches the graph), and
occlusion = max(depth) (so depth units reach the graph). Other test modules import `build_toy_model`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mtl_grasp import contract

# Relative boxes (fractions of W, H) and base scores of the toy's fixed detections.
TOY_REL_BOXES = np.array(
    [[0.10, 0.20, 0.50, 0.60], [0.55, 0.05, 0.95, 0.45], [0.30, 0.50, 0.70, 0.90]], dtype=np.float32
)
TOY_SCORES = np.array([0.9, 0.7, 0.3], dtype=np.float32)


def toy_roi_masks(k: int = len(TOY_SCORES), m: int = contract.ROI_MASK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(visible, amodal) [k, m, m]: amodal is the full box, visible its left half."""
    amodal = np.ones((k, m, m), np.float32)
    visible = amodal.copy()
    visible[:, :, m // 2 :] = 0.0
    return visible, amodal


def build_toy_model(
    path: Path,
    metadata: dict[str, str] | None = None,
    input_names: tuple[str, str] = contract.INPUT_NAMES,
    opset: int = 17,
    label: int = 1,
) -> Path:
    """Write the toy model to `path` with `metadata` (default: a valid ModelMetadata) and return it."""
    k = len(TOY_SCORES)
    rgb_name, depth_name = input_names
    visible, amodal = toy_roi_masks()
    inits = [
        numpy_helper.from_array(TOY_REL_BOXES, "rel_boxes"),
        numpy_helper.from_array(TOY_SCORES, "base_scores"),
        numpy_helper.from_array(np.full(k, label, np.int64), "labels_c"),
        numpy_helper.from_array(visible, "visible_c"),
        numpy_helper.from_array(amodal, "amodal_c"),
        numpy_helper.from_array(np.array([3], np.int64), "i3"),
        numpy_helper.from_array(np.array([2], np.int64), "i2"),
        numpy_helper.from_array(np.array([4], np.int64), "i4"),
        numpy_helper.from_array(np.array([k], np.int64), "k_shape"),
    ]
    nodes = [
        # [W, H, W, H] from the rgb shape [1, 3, H, W]
        helper.make_node("Shape", [rgb_name], ["shape"]),
        helper.make_node("Slice", ["shape", "i3", "i4"], ["w"]),
        helper.make_node("Slice", ["shape", "i2", "i3"], ["h"]),
        helper.make_node("Concat", ["w", "h", "w", "h"], ["whwh_i"], axis=0),
        helper.make_node("Cast", ["whwh_i"], ["whwh"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["rel_boxes", "whwh"], [contract.OUTPUT_BOXES]),
        helper.make_node("ReduceMax", [rgb_name], ["rgb_max"], keepdims=0),
        helper.make_node("Mul", ["base_scores", "rgb_max"], [contract.OUTPUT_SCORES]),
        helper.make_node("Identity", ["labels_c"], [contract.OUTPUT_LABELS]),
        helper.make_node("Identity", ["visible_c"], [contract.OUTPUT_VISIBLE_MASKS]),
        helper.make_node("Identity", ["amodal_c"], [contract.OUTPUT_AMODAL_MASKS]),
        helper.make_node("ReduceMax", [depth_name], ["depth_max"], keepdims=0),
        helper.make_node("Expand", ["depth_max", "k_shape"], [contract.OUTPUT_OCCLUSION]),
    ]
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    graph = helper.make_graph(
        nodes,
        "mtl_grasp_toy",
        inputs=[
            helper.make_tensor_value_info(rgb_name, f32, [1, 3, "H", "W"]),
            helper.make_tensor_value_info(depth_name, f32, [1, 1, "H", "W"]),
        ],
        outputs=[
            helper.make_tensor_value_info(contract.OUTPUT_BOXES, f32, ["N", 4]),
            helper.make_tensor_value_info(contract.OUTPUT_SCORES, f32, ["N"]),
            helper.make_tensor_value_info(contract.OUTPUT_LABELS, i64, ["N"]),
            helper.make_tensor_value_info(contract.OUTPUT_VISIBLE_MASKS, f32, ["N", 28, 28]),
            helper.make_tensor_value_info(contract.OUTPUT_AMODAL_MASKS, f32, ["N", 28, 28]),
            helper.make_tensor_value_info(contract.OUTPUT_OCCLUSION, f32, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by any onnxruntime >= 1.10
    props = contract.ModelMetadata(class_names=("object",), train_image_size=64).to_dict()
    props = props if metadata is None else metadata
    for key, value in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_toy_model_is_contract_conforming(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = build_toy_model(tmp_path / "toy.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(contract.OUTPUT_NAMES)
    rgb = np.full((1, 3, 40, 80), 0.5, np.float32)
    depth = np.full((1, 1, 40, 80), 0.7, np.float32)
    boxes, scores, labels, vis, amo, occ = sess.run(None, {"rgb": rgb, "depth": depth})
    np.testing.assert_allclose(boxes[0], [8, 8, 40, 24], rtol=1e-6)
    np.testing.assert_allclose(scores, TOY_SCORES * 0.5, rtol=1e-6)
    np.testing.assert_allclose(occ, 0.7, rtol=1e-6)
    assert labels.dtype == np.int64 and vis.shape == amo.shape == (3, 28, 28)
