"""`forward_export` traces to ONNX with dynamic H/W and runs in onnxruntime like the torch model."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_model_helpers import images, tiny_model

from mtl_grasp.contract import INPUT_NAMES, OUTPUT_NAMES


class _Export(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, rgb, depth):
        return self.model.forward_export(rgb, depth)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model().eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    axes = {"rgb": {2: "height", 3: "width"}, "depth": {2: "height", 3: "width"}}
    axes.update({name: {0: "detections"} for name in OUTPUT_NAMES})
    # TorchScript-based exporter: torchvision's NMS/ROI code has tracing paths but is not
    # torch.export-able (data-dependent guards in batched_nms)
    torch.onnx.export(
        _Export(model).eval(), images(batch=1), str(path), dynamo=False, opset_version=17,
        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
    )  # fmt: skip
    return model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 128), (100, 70)])
def test_onnx_matches_torch_at_several_sizes(exported, height, width):
    model, session = exported
    rgb, depth = images(batch=1, seed=5, height=height, width=width)
    with torch.no_grad():
        expected = model.forward_export(rgb, depth)
    got = session.run(None, {"rgb": rgb.numpy(), "depth": depth.numpy()})
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    assert expected[0].shape[0] > 0  # the comparison below covers real detections
    for name, ours, theirs in zip(OUTPUT_NAMES, got, expected):
        assert ours.shape == tuple(theirs.shape), name
        assert ours.dtype == theirs.numpy().dtype, name
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-3, err_msg=name)
