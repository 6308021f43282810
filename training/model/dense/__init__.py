"""The dense multi-task family (NYU-v2, CityScapes): dilated ResNet18 -> Z -> one decoder per task.

See docs/dense.md. Modules: :mod:`.config` (`DenseModelConfig`), :mod:`.backbone` (the stride-8
ResNet18), :mod:`.heads` (pyramid pooling / ASPP), :mod:`.losses`, :mod:`.tasks` (the task registry),
:mod:`.network` (`DenseMTLNet`), :mod:`.evaluate` (metrics over a loader).
"""

from training.model.dense.config import DenseModelConfig
from training.model.dense.network import DenseMTLNet
from training.model.dense.tasks import DENSE_TASKS, dense_task

__all__ = ["DENSE_TASKS", "DenseMTLNet", "DenseModelConfig", "dense_task"]
