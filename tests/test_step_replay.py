"""The step's re-evaluation (FAMO) and sub-step forwards replay the step's random draws (issue 13, defect 7).

AmodalRCNN's samplers draw anchors and ROIs from torch's global generator, so a second forward of the
same batch used to draw other samples: FAMO's loss change then measured sampling noise as well as the
step. On the real network with tiny sizes: at unchanged parameters the re-evaluation returns exactly
the step's losses, and the training RNG stream after the step does not depend on it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_model_helpers import images, scene_targets, tiny_model

from training.data.batch import RGBDBatch
from training.engine.step import TrainStep
from training.families.amodal import AmodalMTLModel
from training.model.names import LOSS_NAMES
from training.mtl import build
from training.tasks import TaskSpec

CPU = torch.device("cpu")


def _step(net, method: str, device: torch.device = CPU) -> TrainStep:
    model = AmodalMTLModel(net.to(device))
    spec = TaskSpec.one_per_loss(LOSS_NAMES)
    m = build(method, len(spec)).to(device)
    opt = torch.optim.SGD(list(net.parameters()) + list(m.parameters()), lr=1e-3)
    return TrainStep(model, spec, m, opt, device)


def _batch() -> RGBDBatch:
    rgb, depth = images()
    return RGBDBatch(rgb, depth, scene_targets())


def _streams(device: torch.device) -> list[torch.Tensor]:
    return [torch.get_rng_state()] + ([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_reevaluation_at_unchanged_parameters_returns_the_step_losses_on_amodal_rcnn(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    dev = torch.device(device)
    net = tiny_model().train()
    step = _step(net, "famo", dev)
    torch.manual_seed(3)
    state = step.forward(_batch(), 0, 0)
    streams = _streams(dev)
    again = state.ctx.reevaluate()
    moved = [not torch.equal(a, b) for a, b in zip(_streams(dev), streams)]
    assert not any(moved), "the re-evaluation moved the training RNG stream"
    assert torch.equal(again, state.ctx.losses.detach()), (again, state.ctx.losses)
    # the check has teeth: a plain second forward draws other anchor/ROI samples
    with torch.no_grad():
        fresh = step.task_spec.stack(step.losses(_batch().to(dev))[2])
    assert not torch.equal(fresh, state.ctx.losses.detach())


def test_training_rng_stream_after_a_famo_step_is_unchanged_by_its_reevaluation() -> None:
    """FAMO (forward, backward, step, re-evaluation) leaves the stream where an EW step leaves it."""
    net = tiny_model().train()
    draws = []
    for method in ("famo", "ew"):
        step = _step(copy.deepcopy(net), method)
        torch.manual_seed(11)
        result = step(_batch(), 0, 0)
        assert not result.skipped, result.reason
        draws.append(torch.rand(8))
    assert torch.equal(draws[0], draws[1])
