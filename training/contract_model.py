"""A tiny ONNX model that honours mtl_grasp/contract.py: fixed boxes and masks, scores scaled by the
image brightness, depth entering the graph. Shared by the node benchmark (`python -m training bench
node`: realistic instance counts independent of how fast a trained network is) and the tests of the
runtime, the node and the offline bag tools (a real onnxruntime session in milliseconds). It lives
here, not in tests/ (the benchmark needs it too) nor in training/export/ (whose package imports torch:
this module needs only numpy and onnx)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtl_grasp.contract import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUT_AMODAL_MASKS,
    OUTPUT_BOXES,
    OUTPUT_LABELS,
    OUTPUT_OCCLUSION,
    OUTPUT_SCORES,
    OUTPUT_VISIBLE_MASKS,
    ROI_MASK_SIZE,
    ModelMetadata,
)

SLOW_MATMUL_SIZE = 1024


def contract_model_outputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The constant parts of the synthetic model: box fractions, base scores, labels, masks, occlusion."""
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(np.sqrt(max(n, 1))))
    boxes = []
    for i in range(n):
        gx, gy = i % grid, i // grid
        x1, y1 = (gx + 0.1) / grid, (gy + 0.1) / grid
        w, h = rng.uniform(0.5, 0.8) / grid, rng.uniform(0.5, 0.8) / grid
        boxes.append([x1, y1, min(1.0, x1 + w), min(1.0, y1 + h)])
    yy, xx = np.mgrid[0:ROI_MASK_SIZE, 0:ROI_MASK_SIZE] / (ROI_MASK_SIZE - 1)
    amodal = (((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.45) ** 2 <= 1.0).astype(np.float32)
    visible = np.repeat(amodal[None], n, axis=0).copy()
    occlusion = np.zeros(n, np.float32)
    for i in range(1, n, 2):  # every other instance has its right part hidden
        cut = rng.integers(ROI_MASK_SIZE // 3, 2 * ROI_MASK_SIZE // 3)
        visible[i, :, cut:] = 0.0
        occlusion[i] = 0.9
    occlusion[0::2] = 0.1
    return {
        "box_fractions": np.asarray(boxes, np.float32).reshape(n, 4),
        "base_scores": np.linspace(0.99, 0.55, n, dtype=np.float32),
        "labels": np.ones(n, np.int64),
        "visible": visible * 0.98,
        "amodal": np.repeat(amodal[None], n, axis=0) * 0.98,
        "occlusion": occlusion,
    }


def _busy_nodes(matmuls: int, min_width: int, size: int = SLOW_MATMUL_SIZE) -> tuple[list, list, str]:
    """Nodes computing a zero scalar that costs `matmuls` size x size MatMuls on inputs at least
    `min_width` pixels wide (an If: narrower inputs, e.g. the detector's warm-up frame, cost nothing).
    The chain depends on the input, so onnxruntime cannot fold it away."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    a = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    chain = [helper.make_node("Mul", ["busy_a", "mean_rgb"], ["busy_0"])]
    for i in range(matmuls):
        chain.append(helper.make_node("MatMul", [f"busy_{i}", "busy_a"], [f"busy_{i + 1}"]))
    chain += [
        helper.make_node("ReduceMax", [f"busy_{matmuls}"], ["busy_max"], keepdims=0),
        helper.make_node("Sub", ["busy_max", "busy_max"], ["busy_then"]),
    ]
    scalar = [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in ("busy_then", "busy_else")]
    then_branch = helper.make_graph(chain, "busy_then", [], [scalar[0]])
    else_branch = helper.make_graph(
        [helper.make_node("Sub", ["half", "half"], ["busy_else"])], "busy_else", [], [scalar[1]]
    )
    inits = [
        numpy_helper.from_array(a, "busy_a"),
        numpy_helper.from_array(np.array([min_width], np.int64), "busy_min_width"),
    ]
    nodes = [
        helper.make_node("GreaterOrEqual", ["w", "busy_min_width"], ["busy_wide_1"]),
        helper.make_node("Squeeze", ["busy_wide_1"], ["busy_wide"]),
        helper.make_node(
            "If", ["busy_wide"], ["busy_zero"], then_branch=then_branch, else_branch=else_branch
        ),
    ]
    return inits, nodes, "busy_zero"


def write_contract_model(
    path: str | os.PathLike,
    n: int = 8,
    seed: int = 0,
    metadata: ModelMetadata | None = None,
    slow_matmuls: int = 0,
    slow_min_width: int = 100,
) -> Path:
    """Write a tiny ONNX model with the contract's inputs, outputs and metadata.

    boxes = fixed fractions x (W, H, W, H) of the input; scores = base scores x (0.5 + 0.5 mean(rgb)),
    so brighter frames score higher and a different frame gives a different output.
    `slow_matmuls` > 0 adds that many 1024 x 1024 matrix products (2 GFLOP each: tens of ms on one
    core) to every inference of an input at least `slow_min_width` pixels wide, without changing the outputs:
    a model that is reliably busy, for tests of what happens mid-inference (narrower frames, like the
    detector's warm-up at the training size 64, stay fast).
    """
    import onnx
    from onnx import helper

    if n < 1:
        raise ValueError(f"n: expected at least one instance, got {n}")
    scores_out = "scores_raw" if slow_matmuls else OUTPUT_SCORES
    inits, nodes = _contract_graph(contract_model_outputs(n, seed), scores_out)
    if slow_matmuls:
        busy_inits, busy_nodes, zero = _busy_nodes(slow_matmuls, slow_min_width)
        inits += busy_inits
        nodes += [*busy_nodes, helper.make_node("Add", ["scores_raw", zero], [OUTPUT_SCORES])]
    graph = helper.make_graph(nodes, "mtl_grasp_contract_test_model", *_graph_io(n), initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mtl_grasp")
    model.ir_version = 8
    meta = metadata or ModelMetadata(train_image_size=64, config_hash="synthetic-contract-model")
    helper.set_model_props(model, meta.to_dict())
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _contract_graph(c: dict[str, np.ndarray], scores_out: str) -> tuple[list, list]:
    """Initialisers and nodes of the fixed-output graph (scores written to `scores_out`)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(c["box_fractions"], "box_fractions"),
        numpy_helper.from_array(c["base_scores"], "base_scores"),
        numpy_helper.from_array(c["labels"], "const_labels"),
        numpy_helper.from_array(c["visible"].astype(np.float32), "const_visible"),
        numpy_helper.from_array(c["amodal"].astype(np.float32), "const_amodal"),
        numpy_helper.from_array(c["occlusion"], "const_occlusion"),
        numpy_helper.from_array(np.array([2], np.int64), "idx_h"),
        numpy_helper.from_array(np.array([3], np.int64), "idx_w"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("Shape", [INPUT_RGB], ["shape"]),
        helper.make_node("Gather", ["shape", "idx_h"], ["h"]),
        helper.make_node("Gather", ["shape", "idx_w"], ["w"]),
        helper.make_node("Concat", ["w", "h", "w", "h"], ["whwh_i"], axis=0),
        helper.make_node("Cast", ["whwh_i"], ["whwh"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["box_fractions", "whwh"], [OUTPUT_BOXES]),
        helper.make_node("ReduceMean", [INPUT_RGB], ["mean_rgb"], keepdims=0),
        helper.make_node("Mul", ["mean_rgb", "half"], ["mean_half"]),
        helper.make_node("Add", ["mean_half", "half"], ["factor"]),
        helper.make_node("Mul", ["base_scores", "factor"], [scores_out]),
        helper.make_node("Identity", ["const_labels"], [OUTPUT_LABELS]),
        helper.make_node("Identity", ["const_visible"], [OUTPUT_VISIBLE_MASKS]),
        helper.make_node("Identity", ["const_amodal"], [OUTPUT_AMODAL_MASKS]),
        # depth enters the graph (as in a real model) without changing the constant occlusion
        helper.make_node("ReduceMax", [INPUT_DEPTH], ["max_depth"], keepdims=0),
        helper.make_node("Mul", ["max_depth", "half"], ["depth_zero_a"]),
        helper.make_node("Sub", ["depth_zero_a", "depth_zero_a"], ["depth_zero"]),
        helper.make_node("Add", ["const_occlusion", "depth_zero"], [OUTPUT_OCCLUSION]),
    ]
    return inits, nodes


def _graph_io(n: int) -> tuple[list, list]:
    """The contract's graph inputs and outputs for `n` detections."""
    from onnx import TensorProto, helper

    m, f = ROI_MASK_SIZE, TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info(INPUT_RGB, f, [1, 3, "H", "W"]),
        helper.make_tensor_value_info(INPUT_DEPTH, f, [1, 1, "H", "W"]),
    ]
    outputs = [
        helper.make_tensor_value_info(OUTPUT_BOXES, f, [n, 4]),
        helper.make_tensor_value_info(OUTPUT_SCORES, f, [n]),
        helper.make_tensor_value_info(OUTPUT_LABELS, TensorProto.INT64, [n]),
        helper.make_tensor_value_info(OUTPUT_VISIBLE_MASKS, f, [n, m, m]),
        helper.make_tensor_value_info(OUTPUT_AMODAL_MASKS, f, [n, m, m]),
        helper.make_tensor_value_info(OUTPUT_OCCLUSION, f, [n]),
    ]
    return inputs, outputs
