"""ImageNet ResNet18 weights from a local file into both branches; clear errors; random-init warning."""

from __future__ import annotations

import pytest
import torch
import torchvision
from test_model_helpers import tiny_config

from training.model import AmodalRCNN, RandomInitWarning


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_pretrained_weights_load_into_both_branches(weights_file):
    state = torch.load(weights_file, weights_only=True)
    model = AmodalRCNN(tiny_config(pretrained_path=str(weights_file)))
    rgb, depth = model.encoder.rgb, model.encoder.depth
    assert torch.equal(rgb.conv1.weight, state["conv1.weight"])
    # depth conv1 = RGB kernel summed over input channels (== replicating depth to 3 channels)
    assert depth.conv1.weight.shape == (64, 1, 7, 7)
    assert torch.allclose(depth.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    for key in ("layer1.0.conv1.weight", "layer4.1.conv2.weight", "layer3.0.downsample.0.weight"):
        assert torch.equal(rgb.state_dict()[key], state[key]), key
        assert torch.equal(depth.state_dict()[key], state[key]), key
    for key in ("bn1.running_mean", "layer2.1.bn2.weight"):
        assert torch.equal(rgb.state_dict()[key], state[key]), key


def test_pretrained_weights_load_with_trainable_batch_norm(weights_file):
    state = torch.load(weights_file, weights_only=True)
    model = AmodalRCNN(tiny_config(pretrained_path=str(weights_file), backbone_norm="batch_norm"))
    assert torch.equal(model.encoder.depth.layer1[0].bn1.weight.detach(), state["layer1.0.bn1.weight"])


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"ModelConfig.pretrained_path: no file at .*nope\.pth"):
        AmodalRCNN(tiny_config(pretrained_path=str(missing)))


def test_mismatched_weights_file_raises(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    del state["layer4.1.bn2.bias"]
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    expected = (
        r"not a torchvision ResNet18 state dict: missing keys \['layer4.1.bn2.bias'\]"
        r".*layer1.0.conv1.weight: file \(32, 64, 3, 3\) vs model \(64, 64, 3, 3\)"
    )
    with pytest.raises(ValueError, match=expected):
        AmodalRCNN(tiny_config(pretrained_path=str(path)))


def test_non_state_dict_file_raises(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="holds a list, expected a state dict"):
        AmodalRCNN(tiny_config(pretrained_path=str(path)))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        AmodalRCNN(tiny_config(pretrained_path=str(garbage)))


def test_random_init_warns():
    with pytest.warns(RandomInitWarning, match="random weights"):
        AmodalRCNN(tiny_config())
