"""Export-time graph rewrites keep the values (onnxruntime before vs after on random graphs)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.export.graph_rewrites import conv_transpose_2x2_to_conv


def _graph(with_logits: bool, bias: bool, k: int = 1) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    c_in, c = 6, 5
    inits = [numpy_helper.from_array(rng.normal(size=(c_in, c, 2, 2)).astype(np.float32), "W")]
    inputs = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "B"))
        inputs.append("B")
    nodes = [
        helper.make_node(
            "ConvTranspose", inputs, ["up"], name="/p/deconv", kernel_shape=[2, 2], strides=[2, 2]
        )
    ]
    nodes.append(helper.make_node("Relu", ["up"], ["act"], name="/p/relu"))
    if with_logits:
        inits += [
            numpy_helper.from_array(rng.normal(size=(k, c, 1, 1)).astype(np.float32), "LW"),
            numpy_helper.from_array(rng.normal(size=k).astype(np.float32), "LB"),
        ]
        nodes.append(
            helper.make_node("Conv", ["act", "LW", "LB"], ["y"], name="/p/logits", kernel_shape=[1, 1])
        )
    else:
        nodes.append(helper.make_node("Concat", ["act", "act"], ["y"], name="/p/cat", axis=1))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c_in, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h2", "w2"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(
    ("with_logits", "bias", "k", "expected_ops"),
    [
        (True, True, 1, ["Conv", "Relu", "Conv", "DepthToSpace"]),  # the mask predictor
        (True, False, 3, ["Conv", "Relu", "Conv", "DepthToSpace"]),  # several logit channels, no bias
        (False, True, 1, ["Conv", "DepthToSpace", "Relu", "Concat"]),  # the box code (feeds a concat)
    ],
)
def test_conv_transpose_rewrite_keeps_values(with_logits: bool, bias: bool, k: int, expected_ops) -> None:
    model = _graph(with_logits, bias, k)
    x = np.random.default_rng(1).normal(size=(3, 6, 4, 7)).astype(np.float32)
    before = _run(model, x)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert conv_transpose_2x2_to_conv(rewritten) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    assert [n.op_type for n in rewritten.graph.node] == expected_ops
    after = _run(rewritten, x)
    assert after.shape == before.shape == ((3, k if with_logits else 10, 8, 14))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_other_conv_transposes_are_left_alone() -> None:
    model = _graph(with_logits=True, bias=True)
    deconv = model.graph.node[0]
    deconv.attribute[1].ints[:] = [1, 1]  # stride 1: not the 2x upsampling
    assert conv_transpose_2x2_to_conv(model) == 0
    assert model.graph.node[0].op_type == "ConvTranspose"
