"""Twice-differentiable ROI Align (training/model/roi_align_2nd.py) and CosReg on the real AmodalRCNN."""

from __future__ import annotations

import pytest
import torch
from test_model_helpers import images, scene_targets, tiny_model
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import initLevelMapper

from training.model.roi_align_2nd import TwiceDifferentiableMultiScaleRoIAlign, roi_align_2nd
from training.model.roi_heads import AmodalRoIHeads
from training.mtl import build
from training.mtl.context import StepContext
from training.tasks import TaskSpec

SIZE = 64


def _rois(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    # (batch index, x1, y1, x2, y2): boxes inside, across and partly outside a 6x7 map
    return torch.tensor(
        [[0, 0.3, 0.6, 4.2, 3.9], [1, 1.5, 0.2, 6.4, 5.1], [0, 2.2, 1.1, 3.0, 2.7], [1, -1.0, 3.0, 2.5, 7.5]],
        dtype=dtype,
    )


@pytest.mark.parametrize("aligned", [False, True])
def test_gradcheck_and_gradgradcheck_against_finite_differences(aligned: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = _rois()

    def f(inp: torch.Tensor) -> torch.Tensor:
        return roi_align_2nd(inp, rois, (2, 3), spatial_scale=0.9, sampling_ratio=2, aligned=aligned)

    assert torch.autograd.gradcheck(f, (x,))
    # second order: the derivative of the vector-Jacobian product w.r.t. x and w.r.t. the cotangent,
    # i.e. through _roi_align_backward's own backward, which torchvision lacks
    assert torch.autograd.gradgradcheck(f, (x,))


def test_hessian_vector_product_of_a_quadratic() -> None:
    """For q(x) = ½‖A x‖², ∇q = Aᵀ A x and the Hessian-vector product is Aᵀ A v (A = roi_align)."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(x)
    rois = _rois()

    def apply_a(inp: torch.Tensor) -> torch.Tensor:
        return roi_align_2nd(inp, rois, 2, 1.0, 2)

    (g,) = torch.autograd.grad(0.5 * apply_a(x).pow(2).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v, create_graph=True)
    va = v.detach().requires_grad_()
    (expected,) = torch.autograd.grad(apply_a(va), va, grad_outputs=apply_a(v))  # Aᵀ(A v), first order
    torch.testing.assert_close(hv, expected, rtol=0, atol=1e-12)
    assert hv.grad_fn is not None  # differentiable once more (a constant here: ∂(Aᵀ A v)/∂x = 0)


@pytest.mark.parametrize("aligned", [False, True])
def test_forward_and_first_backward_equal_torchvision(aligned: bool) -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 4, 9, 11, requires_grad=True)
    rois = _rois(torch.float32) * 1.4
    ours = roi_align_2nd(x, rois, 3, 0.5, 2, aligned)
    ref = roi_align(x, rois, 3, 0.5, 2, aligned)
    assert torch.equal(ours, ref)
    w = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad(ours, x, w)
    (g_ref,) = torch.autograd.grad(ref, x, w)
    assert torch.equal(g_ours, g_ref)


def test_bad_rois_are_named() -> None:
    with pytest.raises(ValueError, match=r"rois: expected a \[K, 5\] tensor.*\(3, 4\)"):
        roi_align_2nd(torch.zeros(1, 1, 4, 4), torch.zeros(3, 4), 2)


def _level_inputs():
    torch.manual_seed(3)
    # P2/P3 of a 160x160 image; a box of side >= 112 px maps to P3 (canonical 224 px -> P4)
    feats = {
        "p2": torch.randn(1, 3, 40, 40, requires_grad=True),
        "p3": torch.randn(1, 3, 20, 20, requires_grad=True),
    }
    boxes = [torch.tensor([[2.0, 3.0, 20.0, 30.0], [5.0, 5.0, 155.0, 150.0], [30.0, 5.0, 40.0, 12.0]])]
    return feats, boxes


def _squared_gradient_norm_wrt_cotangent(pool, feats, boxes, w: torch.Tensor) -> torch.Tensor:
    """d/dw ‖∂(w·pool(x))/∂x‖² = 2 A Aᵀ w: the kind of double backward CosReg performs."""
    w = w.clone().requires_grad_()
    grads = torch.autograd.grad(pool(feats, boxes, [(160, 160)]), list(feats.values()), w, create_graph=True)
    (dw,) = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), w)
    return dw


def test_multiscale_pooler_matches_torchvision_and_only_it_has_a_double_backward() -> None:
    feats, boxes = _level_inputs()
    plain = MultiScaleRoIAlign(["p2", "p3"], 7, sampling_ratio=2)
    ours = TwiceDifferentiableMultiScaleRoIAlign(["p2", "p3"], 7, sampling_ratio=2)
    for pool in (plain, ours):  # strides 4 and 8
        pool.scales, pool.map_levels = [0.25, 0.125], initLevelMapper(2, 3)
    y_plain = plain(feats, boxes, [(160, 160)])
    y_ours = ours(feats, boxes, [(160, 160)])
    assert torch.equal(y_ours, y_plain)
    assert set(plain.map_levels(boxes).tolist()) == {0, 1}  # both levels are exercised
    w = torch.randn_like(y_plain)
    g_plain = torch.autograd.grad(y_plain, list(feats.values()), w)
    g_ours = torch.autograd.grad(y_ours, list(feats.values()), w)
    for a, b in zip(g_plain, g_ours):
        assert torch.equal(a, b)
    dw = _squared_gradient_norm_wrt_cotangent(ours, feats, boxes, w)
    assert torch.isfinite(dw).all() and dw.abs().sum() > 0
    with pytest.raises(RuntimeError, match="double backward"):
        _squared_gradient_norm_wrt_cotangent(plain, feats, boxes, w)
    # eval mode (inference, ONNX export) runs torchvision's pooler unchanged: no double backward there
    ours.eval()
    with pytest.raises(RuntimeError, match="double backward"):
        _squared_gradient_norm_wrt_cotangent(ours, feats, boxes, w)


def _use_torchvision_pools(model) -> None:
    """Swap the model's poolers for plain torchvision ones with the same scales and level mapper."""
    heads: AmodalRoIHeads = model.roi_heads
    for attr in ("box_roi_pool", "task_pool"):
        ours = getattr(heads, attr)
        plain = MultiScaleRoIAlign(ours.featmap_names, ours.output_size, ours.sampling_ratio)
        plain.scales, plain.map_levels = ours.scales, ours.map_levels
        setattr(heads, attr, plain)


def _training_losses_and_grads(model, seed: int):
    rgb, depth = images(batch=2)
    torch.manual_seed(seed)  # same ROI sampling
    losses = model(rgb, depth, scene_targets())
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    return {k: v.detach() for k, v in losses.items()}, {n: p.grad for n, p in model.named_parameters()}


def test_model_training_losses_and_gradients_unchanged_by_the_swap() -> None:
    model = tiny_model(fpn_channels=16).train()
    assert isinstance(model.roi_heads.box_roi_pool, TwiceDifferentiableMultiScaleRoIAlign)
    assert isinstance(model.roi_heads.task_pool, TwiceDifferentiableMultiScaleRoIAlign)
    losses_ours, grads_ours = _training_losses_and_grads(model, seed=5)
    _use_torchvision_pools(model)
    losses_plain, grads_plain = _training_losses_and_grads(model, seed=5)
    assert all(v > 0 for k, v in losses_plain.items() if k != "roi_box")
    # bit-identical: the same torchvision kernels run in the same order, only the autograd nodes differ
    for name in losses_plain:
        assert torch.equal(losses_ours[name], losses_plain[name]), name
    for name, g in grads_plain.items():
        assert (g is None) == (grads_ours[name] is None), name
        assert g is None or torch.equal(grads_ours[name], g), name


@pytest.mark.parametrize("level", ["feature", "parameter"])
def test_cosreg_step_on_amodal_rcnn(level: str) -> None:
    model = tiny_model(fpn_channels=16).train()
    spec = TaskSpec.one_per_loss()
    rgb, depth = images(batch=1)
    targets = scene_targets()[:1]
    shared, heads = model.shared_parameters(), model.task_parameters()
    torch.manual_seed(7)
    Z = model.features(rgb, depth)
    leaves = [z.detach().requires_grad_() for z in Z]
    losses = spec.task_losses(model.heads(leaves, (SIZE, SIZE), targets))
    ctx = StepContext(losses=losses, features=Z, feature_leaves=leaves, shared_params=shared,
                      task_params=heads, task_names=spec.names)  # fmt: skip
    model.zero_grad(set_to_none=True)
    report = build("cosreg", len(spec), level=level, penalty=10.0).backward(ctx)
    R = report.extras["cosreg_R"]
    assert 0.0 < R <= 1.0  # the regulariser is live (tasks' gradients are not orthogonal)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"


def test_cpu_bf16_autocast_matches_torchvision_and_keeps_the_double_backward() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 4, 9, 11).bfloat16().requires_grad_()  # e.g. an FPN level under autocast
    rois = _rois(torch.float32) * 1.4
    w = torch.randn(4, 4, 3, 3).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = roi_align_2nd(x, rois, 3, 0.5, 2)
        ref = roi_align(x, rois, 3, 0.5, 2)
    assert ours.dtype == ref.dtype == torch.bfloat16 and torch.equal(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, x, w, create_graph=True)
    (g_ref,) = torch.autograd.grad(ref, x, w)
    assert torch.equal(g_ours, g_ref)
    (dw,) = torch.autograd.grad(g_ours.float().pow(2).sum(), w)  # 2 A Aᵀ w, through the adjoint's backward
    assert dw.dtype == torch.bfloat16 and torch.isfinite(dw).all() and dw.abs().sum() > 0


@pytest.mark.parametrize("level", ["feature", "parameter"])
def test_cosreg_error_names_the_missing_double_backward_only_for_torchvision_roi_align(level: str) -> None:
    torch.manual_seed(6)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    x, rois = torch.randn(2, 2, 6, 7), _rois(torch.float32)
    targets = torch.randn(3, 4, 3, 2, 2)

    def step(pool) -> float:
        conv.zero_grad(set_to_none=True)
        z = conv(x)
        leaf = z.detach().requires_grad_()
        pooled = pool(leaf, rois, 2, 1.0, 2)
        losses = [(pooled * (i + 1) - t).pow(2).mean() for i, t in enumerate(targets)]
        ctx = StepContext(losses=losses, features=[z], feature_leaves=[leaf],
                          shared_params=list(conv.parameters()), task_params=[])  # fmt: skip
        return build("cosreg", 3, level=level).backward(ctx).extras["cosreg_R"]

    assert 0.0 < step(roi_align_2nd) <= 1.0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in conv.parameters())
    with pytest.raises(RuntimeError, match="cosreg: the network does not support the double backward"):
        step(roi_align)
