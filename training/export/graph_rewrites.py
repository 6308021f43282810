"""Export-time ONNX graph rewrites that keep the values and make the graph cheaper to run.

`conv_transpose_2x2_to_conv`: a ConvTranspose with a 2x2 kernel and stride 2 (the mask predictors'
14 -> 28 upsampling and the box code's 7 -> 14) is exactly a 1x1 Conv to 4x the channels followed by
DepthToSpace (CRD): output pixel (2i + a, 2j + b) of channel c is sum_ci x[ci, i, j] W[ci, c, a, b] + b[c],
which is input channel c * 4 + a * 2 + b of the 1x1 conv's output, moved by DepthToSpace. Why: onnxruntime
runs ConvTranspose through a slow col2im path and cannot quantise it (the profile of the default model
at 640x480 showed 0.9 s of float ConvTranspose, 18 % of the INT8 model's time), while the 1x1 Conv is
a plain GEMM that also quantises to an int8 QLinearConv.

When the upsampling feeds only a ReLU and a 1x1 convolution (the mask predictor: deconv -> ReLU ->
mask logits), the logits are computed before the rearrangement instead: 1x1 Conv to 4C channels
(position-major), ReLU, a grouped 1x1 Conv (one group per 2x2 position) to 4K logits, then
DepthToSpace (DCR) of the K-channel logits. Same values; the [N, C, 28, 28] tensor and its
rearrangement (0.6 s per frame with C = 256, 100 detections) never exist.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_2x2_stride2(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    a = _attrs(node)
    weight = inits[node.input[1]]
    return (
        len(weight.dims) == 4
        and tuple(weight.dims[2:]) == (2, 2)
        and list(a.get("strides", [1, 1])) == [2, 2]
        and list(a.get("kernel_shape", [2, 2])) == [2, 2]
        and not any(a.get("pads", [0, 0, 0, 0]))
        and not any(a.get("output_padding", [0, 0]))
        and list(a.get("dilations", [1, 1])) == [1, 1]
        and a.get("group", 1) == 1
        and "output_shape" not in a
        and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and (len(node.input) < 3 or not node.input[2] or node.input[2] in inits)
    )


def _conv_weights(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, np.ndarray]:
    """(weight [4 * C_out, C_in, 1, 1], bias [4 * C_out]) of the equivalent 1x1 convolution."""
    w = numpy_helper.to_array(inits[node.input[1]])  # [C_in, C_out, 2, 2]
    c_in, c_out = w.shape[:2]
    conv_w = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(c_out * 4, c_in, 1, 1))
    if len(node.input) >= 3 and node.input[2]:
        bias = numpy_helper.to_array(inits[node.input[2]])
    else:
        bias = np.zeros(c_out, dtype=w.dtype)
    return conv_w, np.repeat(bias, 4)


def _logits_after(node: onnx.NodeProto, graph: onnx.GraphProto, inits: dict) -> tuple | None:
    """(relu, conv) when `node`'s output feeds only a ReLU whose output feeds only a 1x1 Conv."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    outputs = {o.name for o in graph.output}
    after = consumers.get(node.output[0], [])
    if len(after) != 1 or after[0].op_type != "Relu" or node.output[0] in outputs:
        return None
    relu = after[0]
    after = consumers.get(relu.output[0], [])
    if len(after) != 1 or after[0].op_type != "Conv" or relu.output[0] in outputs:
        return None
    conv, a = after[0], _attrs(after[0])
    if conv.input[1] not in inits or tuple(inits[conv.input[1]].dims[2:]) != (1, 1) or a.get("group", 1) != 1:
        return None
    if len(conv.input) >= 3 and conv.input[2] and conv.input[2] not in inits:
        return None
    return relu, conv


def _fused_predictor(node, relu, conv, inits, graph) -> list[onnx.NodeProto]:
    """deconv -> ReLU -> 1x1 logits as 1x1 Conv (4C) -> ReLU -> grouped 1x1 Conv (4K) -> DepthToSpace."""
    w = numpy_helper.to_array(inits[node.input[1]])  # [C_in, C, 2, 2]
    c_in, c = w.shape[:2]
    bias = (
        numpy_helper.to_array(inits[node.input[2]]) if len(node.input) >= 3 and node.input[2] else np.zeros(c)
    )
    up_w = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(4 * c, c_in, 1, 1))  # channel ab * C + c
    up_b = np.tile(bias, 4).astype(w.dtype)
    lw = numpy_helper.to_array(inits[conv.input[1]])  # [K, C, 1, 1]
    k = lw.shape[0]
    lb = (
        numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) >= 3 and conv.input[2] else np.zeros(k)
    )
    log_w = np.ascontiguousarray(np.tile(lw, (4, 1, 1, 1)))  # group ab -> channels ab * K + k
    log_b = np.tile(lb, 4).astype(lw.dtype)
    base = (node.name or node.output[0]).rstrip("/")
    names = [f"{base}/as_conv/{n}" for n in ("W", "B", "LW", "LB")]
    for name, value in zip(names, (up_w, up_b, log_w, log_b)):
        graph.initializer.append(numpy_helper.from_array(value, name))
    up, act, logits = f"{base}/as_conv/up", f"{base}/as_conv/relu", f"{base}/as_conv/logits"
    return [
        helper.make_node(
            "Conv", [node.input[0], names[0], names[1]], [up], name=f"{base}/as_conv", kernel_shape=[1, 1]
        ),
        helper.make_node("Relu", [up], [act], name=f"{base}/as_conv/Relu"),
        helper.make_node(
            "Conv",
            [act, names[2], names[3]],
            [logits],
            name=f"{conv.name}/grouped",
            kernel_shape=[1, 1],
            group=4,
        ),
        helper.make_node(
            "DepthToSpace",
            [logits],
            list(conv.output),
            name=f"{base}/depth_to_space",
            blocksize=2,
            mode="DCR",
        ),
    ]


def conv_transpose_2x2_to_conv(model: onnx.ModelProto) -> int:
    """Rewrite every 2x2 / stride-2 ConvTranspose of `model` (in place); returns how many."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    dropped: set[str] = set()  # first outputs of the nodes folded into a rewrite
    for node in graph.node:
        if node.output[0] in dropped:
            continue
        if not _is_2x2_stride2(node, inits):
            new_nodes.append(node)
            continue
        fused = _logits_after(node, graph, inits)
        if fused is not None:
            dropped.update(n.output[0] for n in fused)
            new_nodes.extend(_fused_predictor(node, *fused, inits, graph))
            count += 1
            continue
        conv_w, conv_b = _conv_weights(node, inits)
        base = (node.name or node.output[0]).rstrip("/")
        w_name, b_name, mid = f"{base}/as_conv/W", f"{base}/as_conv/B", f"{base}/as_conv/out"
        graph.initializer.extend(
            [numpy_helper.from_array(conv_w, w_name), numpy_helper.from_array(conv_b, b_name)]
        )
        new_nodes.append(
            helper.make_node(
                "Conv", [node.input[0], w_name, b_name], [mid], name=f"{base}/as_conv", kernel_shape=[1, 1]
            )
        )
        new_nodes.append(
            helper.make_node(
                "DepthToSpace",
                [mid],
                list(node.output),
                name=f"{base}/depth_to_space",
                blocksize=2,
                mode="CRD",
            )
        )
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count
