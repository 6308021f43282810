"""Checkpoint / in-memory model -> ONNX per mtl_grasp/contract.py, verified against PyTorch.

    from training.export import export_model, metadata_from_config
    export_model(model, "model.onnx", image_size=512, metadata=metadata_from_config(config))

CLI: `python -m training export --checkpoint CKPT --out model.onnx`. See docs/runtime.md.
"""

from training.export.checkpoint import config_hash, metadata_from_config, model_from_checkpoint
from training.export.onnx_export import DEFAULT_OPSET, ExportResult, export_model
from training.export.parity import ParityError, Tolerances, check_parity

__all__ = [
    "DEFAULT_OPSET",
    "ExportResult",
    "ParityError",
    "Tolerances",
    "check_parity",
    "config_hash",
    "export_model",
    "metadata_from_config",
    "model_from_checkpoint",
]
