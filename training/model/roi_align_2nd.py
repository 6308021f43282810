"""A twice-differentiable ROI Align and the multi-scale pooler that uses it while training.

Why: torchvision registers a backward for ``torchvision::roi_align`` but its backward op
``torchvision::_roi_align_backward`` has none, so any method that differentiates a task gradient
(CosReg builds ∂L_i/∂Z with ``create_graph=True`` and backpropagates a function of it) fails at the ROI
heads with "derivative for _roi_align_backward is not implemented".

How: for fixed ROIs, ROI Align is a LINEAR map A of its feature input x (bilinear sampling + averaging
with weights that depend on the ROIs only). Its backward is the adjoint map g ↦ Aᵀg, which is what
``_roi_align_backward`` computes, and the adjoint of Aᵀ is A again. So two autograd Functions that call
each other in their backwards are differentiable to any order, with no new kernel: the forward is
torchvision's op itself, hence bit-identical values and first gradients. The ROIs get no gradient
(torchvision gives them none either; the ROI heads pool on detached proposals).

Where: `TwiceDifferentiableMultiScaleRoIAlign` uses it only in training mode with grad enabled. Inference
and ONNX export (eval mode, tracing) go through torchvision's `MultiScaleRoIAlign.forward` unchanged, so
its ONNX symbolic and its traced level merge are untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

__all__ = ["TwiceDifferentiableMultiScaleRoIAlign", "roi_align_2nd"]


class _RoIAlign(torch.autograd.Function):
    """y = A x (torchvision::roi_align); backward: Aᵀ g through `_RoIAlignAdjoint` (differentiable)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        rois: Tensor,
        spatial_scale: float,
        pooled_height: int,
        pooled_width: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
        ctx.input_shape = tuple(x.shape)
        return torch.ops.torchvision.roi_align(
            x, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
        )

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # type: ignore[override]
        (rois,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _RoIAlignAdjoint.apply(grad, rois, ctx.params, ctx.input_shape)
        return grad_x, None, None, None, None, None, None


class _RoIAlignAdjoint(torch.autograd.Function):
    """x̄ = Aᵀ g (torchvision::_roi_align_backward); its own backward is A again (`_RoIAlign`)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, grad: Tensor, rois: Tensor, params: tuple, input_shape: tuple[int, int, int, int]
    ) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.params = params
        spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = params
        batch, channels, height, width = input_shape
        return torch.ops.torchvision._roi_align_backward(
            grad.contiguous(), rois, spatial_scale, pooled_height, pooled_width,
            batch, channels, height, width, sampling_ratio, aligned,
        )  # fmt: skip

    @staticmethod
    def backward(ctx: Any, grad_grad: Tensor):  # type: ignore[override]
        (rois,) = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            grad = _RoIAlign.apply(grad_grad.contiguous(), rois, *ctx.params)
        return grad, None, None, None


def roi_align_2nd(
    input: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """`torchvision.ops.roi_align` (same values and first gradients) that also has higher derivatives.

    ``rois`` is a ``[K, 5]`` tensor (batch index, x1, y1, x2, y2); it receives no gradient.
    """
    if not isinstance(rois, Tensor) or rois.dim() != 2 or rois.shape[1] != 5:
        found = tuple(rois.shape) if isinstance(rois, Tensor) else type(rois).__name__
        raise ValueError(f"rois: expected a [K, 5] tensor (batch index, x1, y1, x2, y2), got {found}")
    if input.dim() != 4:
        raise ValueError(f"input: expected a [N, C, H, W] tensor, got shape {tuple(input.shape)}")
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if input.device.type != "cpu" and torch.are_deterministic_algorithms_enabled():
        # torchvision then uses its pure-torch implementation (deterministic and already twice
        # differentiable) instead of the kernel whose backward scatters with atomics
        return tv_roi_align(input, rois, size, spatial_scale, sampling_ratio, aligned)
    args = (float(spatial_scale), size[0], size[1], sampling_ratio, aligned)
    device_type = input.device.type
    if torch.is_autocast_enabled(device_type):
        # what torchvision's autocast kernel does: run in float32 and cast the result back. The casts
        # are outside the Functions so that the backward kernels also see float32 (CPU has none for
        # bfloat16), with autocast off so that nothing inside is cast again.
        with torch.autocast(device_type, enabled=False):
            out = _RoIAlign.apply(input.float(), rois.float(), *args)
        return out.to(input.dtype)
    return _RoIAlign.apply(input, rois, *args)


class TwiceDifferentiableMultiScaleRoIAlign(MultiScaleRoIAlign):
    """`MultiScaleRoIAlign` whose training-time pooling supports double backward (for CosReg).

    Eval mode, ``torch.no_grad`` and tracing (ONNX export) take torchvision's path unchanged. The
    training path reuses torchvision's level mapper and ROI format and fills the result exactly as
    torchvision does, so values and first-order gradients are bit-identical.
    """

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        tracing = torch.jit.is_scripting() or torch.jit.is_tracing()
        if tracing or not (self.training and torch.is_grad_enabled()):
            return super().forward(x, boxes, image_shapes)
        levels_x = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                levels_x, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        if len(levels_x) == 1:
            return roi_align_2nd(levels_x[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        first = levels_x[0]
        result = first.new_zeros((len(rois), first.shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(levels_x, self.scales)):
            idx = torch.where(levels == level)[0]
            pooled = roi_align_2nd(feature, rois[idx], self.output_size, scale, self.sampling_ratio)
            result[idx] = pooled.to(result.dtype)  # levels may differ in dtype under autocast
        return result
