"""Counting the matmul/convolution FLOPs of arbitrary code, backward passes and `autograd.grad` included.

`torch.utils.flop_counter.FlopCounterMode` also tracks the module hierarchy with module hooks, and those
hooks break `torch.autograd.grad` calls w.r.t. detached feature leaves (the per-task gradients of the
MTL step: "A leaf node was passed to _will_engine_execute_node ..."). The per-step totals the benchmarks
need come without that tracking: this mode reuses torch's own FLOP formulas (`flop_registry`, 2 FLOPs per
multiply-add) and only sums them. Element-wise and memory-bound work (and torchvision's `roi_align` /
`nms`) is not counted.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class FlopCount(TorchDispatchMode):
    """`with FlopCount() as c: ...` then `c.total` = FLOPs of every counted op run inside, any thread."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry and isinstance(func, torch._ops.OpOverload):
            decomposed = func.decompose(*args, **kwargs)  # composite ops: count what they run
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.total += int(flop_registry[packet](*args, **kwargs, out_val=out))
        return out
