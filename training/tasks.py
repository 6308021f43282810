"""TaskSpec: which named losses form which task.

The default is one task per loss (the 7 losses of the bin-picking network are the 7 tasks of the
study). Other groupings (e.g. "detection" = rpn + roi losses) are a mapping task -> loss names. The
loss names are the model family's (`ModelFamily.loss_names`); the bin-picking network's by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch

from training.model.names import LOSS_NAMES


@dataclass(frozen=True)
class TaskSpec:
    """An ordered list of tasks, each the sum of one or more named losses."""

    tasks: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def one_per_loss(cls, loss_names: Sequence[str] = LOSS_NAMES) -> TaskSpec:
        return cls(tuple((name, (name,)) for name in loss_names))

    @classmethod
    def from_mapping(
        cls, groups: Mapping[str, Sequence[str]], loss_names: Sequence[str] = LOSS_NAMES
    ) -> TaskSpec:
        """Build from {task: [loss names]}; every loss of `loss_names` must belong to exactly one task."""
        known = tuple(loss_names)
        seen: dict[str, str] = {}
        for task, losses in groups.items():
            if not losses:
                raise ValueError(f"tasks: task {task!r} has no losses; expected a non-empty list")
            for loss in losses:
                if loss not in known:
                    raise ValueError(f"tasks: task {task!r} names unknown loss {loss!r}; known: {known}")
                if loss in seen:
                    raise ValueError(f"tasks: loss {loss!r} is in both {seen[loss]!r} and {task!r}")
                seen[loss] = task
        missing = [n for n in known if n not in seen]
        if missing:
            raise ValueError(f"tasks: losses {missing} belong to no task; every loss must be in one task")
        return cls(tuple((task, tuple(losses)) for task, losses in groups.items()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(task for task, _ in self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def task_losses(self, losses: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Named losses -> one scalar per task (a task's losses are summed), unstacked.

        Pass this list to StepContext: per-task gradients of unstacked losses skip the stack's backward.
        """
        missing = [n for _, group in self.tasks for n in group if n not in losses]
        if missing:
            raise KeyError(f"tasks: the model returned no loss named {missing}; it returned {sorted(losses)}")
        # builtin sum (0 + L_a + L_b ...): the graph every pinned result was recorded with
        return [cast(torch.Tensor, sum(losses[n] for n in group)) for _, group in self.tasks]

    def stack(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Named losses -> task losses `[T]`."""
        return torch.stack(self.task_losses(losses))  # [T]

