"""Training backend of mtl_grasp: data, model, MTL methods, trainer, diagnostics, export.

Imports torch and torchvision; `mtl_grasp/` never imports this package.
"""
