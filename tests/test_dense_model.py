"""The dense network: stride 8 by dilation, the MTL split, masked losses, inputs and weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from training.model.amodal_rcnn import RandomInitWarning
from training.model.dense import DenseModelConfig, DenseMTLNet
from training.model.dense.backbone import DilatedResNet18
from training.model.dense.losses import depth_loss, instance_loss, normal_loss, segmentation_loss

SMALL = {"head_channels": 16}


def _model(**kwargs) -> DenseMTLNet:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return DenseMTLNet(DenseModelConfig(**{**SMALL, **kwargs}))


def _targets(batch: int, h: int, w: int, k: int = 13) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "segmentation": torch.randint(-1, k, (batch, h, w), generator=g),
        "depth": torch.rand(batch, 1, h, w, generator=g),
        "normal": F.normalize(torch.randn(batch, 3, h, w, generator=g), dim=1),
        "instance": torch.randn(batch, 2, h, w, generator=g),
        "instance_mask": torch.rand(batch, 1, h, w, generator=g) < 0.3,
    }


def test_stride_8_by_dilation_with_the_reference_dilations() -> None:
    net = DilatedResNet18()
    convs = {n: m for n, m in net.trunk.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs["layer3.0.conv1"].stride == (1, 1) and convs["layer3.0.conv1"].dilation == (1, 1)
    assert convs["layer3.0.conv2"].dilation == (2, 2) and convs["layer3.1.conv1"].dilation == (2, 2)
    assert convs["layer3.0.downsample.0"].stride == (1, 1)
    assert convs["layer4.0.conv1"].dilation == (2, 2) and convs["layer4.1.conv2"].dilation == (4, 4)
    assert convs["layer4.0.downsample.0"].stride == (1, 1)
    assert convs["layer2.0.conv1"].stride == (2, 2) and convs["layer2.0.conv1"].dilation == (1, 1)
    with torch.no_grad():
        for h, w in ((64, 96), (65, 97), (288, 384)):
            assert net.eval()(torch.zeros(1, 3, h, w)).shape == (1, 512, -(-h // 8), -(-w // 8))


def test_dilated_network_is_the_a_trous_version_of_the_strided_one() -> None:
    # With the same weights (eval mode), the stride-8 output sampled every 4th pixel equals torchvision's
    # stride-32 ResNet18 output exactly: dilation replaces the removed subsampling.
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    net = DilatedResNet18().eval()
    net.trunk.load_imagenet_state_dict(reference.state_dict(), source="test")
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        body = torch.nn.Sequential(*list(reference.children())[:-2])
        expected = body(x)  # [2, 512, 2, 3]
        dense = net(x)  # [2, 512, 8, 12]
    torch.testing.assert_close(dense[:, :, ::4, ::4], expected, rtol=1e-4, atol=1e-4)


def test_features_and_heads_split_and_parameter_groups() -> None:
    model = _model(tasks=("segmentation", "depth", "normal", "instance"))
    x = torch.rand(2, 3, 40, 56)
    Z = model.features(x)
    assert len(Z) == 1 and Z[0].shape == (2, 512, 5, 7)
    losses = model.heads(Z, (40, 56), _targets(2, 40, 56))
    assert list(losses) == ["segmentation", "depth", "normal", "instance"] == list(model.loss_names)
    assert all(v.dtype == torch.float32 and v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    # every task loss reaches Z (feature-level methods and FD need dL_i/dZ)
    leaf = Z[0].detach().requires_grad_()
    for name, loss in model.heads([leaf], (40, 56), _targets(2, 40, 56)).items():
        (grad,) = torch.autograd.grad(loss, leaf)
        assert grad.abs().sum() > 0, name
    shared, task = model.shared_parameters(), model.task_parameters()
    assert {id(p) for p in shared}.isdisjoint(id(p) for p in task)
    assert len(shared) + len(task) == len([p for p in model.parameters() if p.requires_grad])
    groups = model.parameter_groups()
    assert list(groups) == ["shared", "segmentation", "depth", "normal", "instance"]
    assert sum(len(g) for g in groups.values()) == len(shared) + len(task)


@pytest.mark.parametrize("head", ["ppm", "aspp"])
def test_eval_mode_returns_predictions_at_input_size(head: str) -> None:
    model = _model(head=head, tasks=("segmentation", "depth", "normal"), num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 47))
    assert out["segmentation"].shape == (1, 5, 33, 47) and out["depth"].shape == (1, 1, 33, 47)
    torch.testing.assert_close(out["normal"].norm(dim=1), torch.ones(1, 33, 47))


def test_bad_inputs_and_targets_are_named() -> None:
    model = _model(tasks=("segmentation", "depth"))
    with pytest.raises(ValueError, match=r"image: expected float \[B, 3, H, W\]"):
        model.features(torch.zeros(2, 1, 16, 16))
    Z = model.features(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"targets: missing 'depth'"):
        model.heads(Z, (16, 16), {"segmentation": torch.zeros(2, 16, 16, dtype=torch.long)})
    bad = {"segmentation": torch.zeros(2, 16, 16), "depth": torch.zeros(2, 1, 16, 16)}
    with pytest.raises(ValueError, match=r"targets\['segmentation'\]: expected int64 of shape \(2, 16, 16\)"):
        model.heads(Z, (16, 16), bad)
    with pytest.raises(ValueError, match=r"targets: required in training mode"):
        model.heads(Z, (16, 16))
    with pytest.raises(ValueError, match=r"training needs >= 2 images"):
        model(torch.rand(1, 3, 16, 16), _targets(1, 16, 16))
    with pytest.raises(ValueError, match=r"DenseModelConfig.tasks: unknown \['edges'\]"):
        DenseModelConfig(tasks=("edges",))
    with pytest.raises(ValueError, match=r"DenseModelConfig.head: expected one of"):
        DenseModelConfig(head="fpn")
    config = DenseModelConfig(tasks=("depth",), num_classes=7, head="aspp")
    assert DenseModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown keys \['depth_scale'\]"):
        DenseModelConfig.from_dict({"depth_scale": 1})


def test_losses_are_masked() -> None:
    pred = torch.tensor([[[[1.0, 2.0, 3.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, 1.0, 5.0]]]])  # the first pixel is invalid
    loss = depth_loss(pred, target)
    assert loss.item() == pytest.approx((1.0 + 2.0) / 2)
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad[0, 0, 0, 0] == 0 and grad.abs().sum() > 0
    # cross-entropy over the labelled pixels only
    logits = torch.randn(1, 3, 1, 4)
    label = torch.tensor([[[0, -1, 2, -1]]])
    expected = F.cross_entropy(logits[..., [0, 2]], label[..., [0, 2]])
    assert segmentation_loss(logits, label).item() == pytest.approx(expected.item(), rel=1e-6)
    # 1 - cos over valid normals, with an unnormalised prediction
    n_pred = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])  # (1,0,0) and (0,1,0)
    n_true = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # (1,0,0) and invalid
    assert normal_loss(n_pred, n_true).item() == pytest.approx(0.0, abs=1e-7)
    n_true2 = torch.tensor([[[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 0.0]]]])  # orthogonal at pixel 0
    assert normal_loss(n_pred, n_true2).item() == pytest.approx(1.0)
    # offsets: both components of instance pixels
    off = torch.tensor([[[[0.5, 9.0]], [[-0.5, 9.0]]]])
    mask = torch.tensor([[[[True, False]]]])
    assert instance_loss(off, torch.zeros_like(off), mask).item() == pytest.approx(0.5)


def test_losses_without_any_valid_pixel_are_zero_finite_and_connected() -> None:
    pred = torch.randn(2, 1, 3, 3, requires_grad=True)
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    cases = [
        (depth_loss(pred, torch.zeros(2, 1, 3, 3)), pred),
        (segmentation_loss(logits, torch.full((2, 3, 3), -1)), logits),
        (normal_loss(logits[:, :3], torch.zeros(2, 3, 3, 3)), logits),
        (
            instance_loss(logits[:, :2], torch.ones(2, 2, 3, 3), torch.zeros(2, 1, 3, 3, dtype=torch.bool)),
            logits,
        ),
    ]
    for loss, leaf in cases:
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, leaf)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_pretrained_weights_come_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = DenseMTLNet(DenseModelConfig(tasks=("depth",), pretrained_path=str(path), **SMALL))
    torch.testing.assert_close(model.backbone.trunk.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match=r"DenseModelConfig.pretrained_path: no file at"):
        DenseMTLNet(DenseModelConfig(pretrained_path=str(tmp_path / "missing.pth")))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(ValueError, match=r"not a torchvision ResNet18 state dict"):
        DenseMTLNet(DenseModelConfig(pretrained_path=str(tmp_path / "foreign.pth")))
    with pytest.warns(RandomInitWarning, match="DenseModelConfig.pretrained_path is not set"):
        DenseMTLNet(DenseModelConfig(tasks=("depth",), **SMALL))
