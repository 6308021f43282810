"""`TorchFramePredictor`: a PyTorch model behind the same frame -> `Detections` call as the ONNX Detector.

Pre-processing is the runtime's `mtl_grasp.runtime.preprocess.prepare` and decoding is
`mtl_grasp.runtime.postprocess.decode`, so a checkpoint evaluated frame by frame (e.g. under
corruptions, `python -m training evaluate --checkpoint ... --corruptions`) sees exactly the geometry
and thresholds its ONNX export sees in the `Detector`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mtl_grasp.contract import OUTPUT_NAMES
from mtl_grasp.runtime.detections import Detections
from mtl_grasp.runtime.postprocess import decode
from mtl_grasp.runtime.preprocess import prepare


class TorchFramePredictor:
    """`predictor(rgb uint8 HxWx3, depth HxW metres or uint16 mm) -> Detections` for an AmodalRCNN.

    Args:
        model: an AmodalRCNN (put in eval mode here).
        class_names: the model's class names (labels are 1-based into them).
        inference_size: as the Detector's: None = camera resolution, an int = longer side (or, with
            keep_aspect=False, size x size as the training loader resizes).
        keep_aspect: see `inference_size`.
        score_threshold, max_instances, mask_threshold: as the Detector's (evaluation: 0, None, 0.5).
        device: where the model runs.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        inference_size: int | None = None,
        keep_aspect: bool = True,
        score_threshold: float = 0.0,
        max_instances: int | None = None,
        mask_threshold: float = 0.5,
        device: torch.device | str = "cpu",
    ) -> None:
        if not hasattr(model, "forward_export"):
            raise ValueError(
                f"model: expected an AmodalRCNN with forward_export(), got {type(model).__name__}"
            )
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.class_names = list(class_names)
        self.inference_size, self.keep_aspect = inference_size, keep_aspect
        self.score_threshold, self.max_instances = score_threshold, max_instances
        self.mask_threshold = mask_threshold

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, depth: np.ndarray) -> Detections:
        inputs = prepare(rgb, depth, self.inference_size, False, self.keep_aspect)
        values = self.model.forward_export(
            torch.from_numpy(inputs.rgb).to(self.device), torch.from_numpy(inputs.depth).to(self.device)
        )
        outputs = {name: v.detach().float().cpu().numpy() for name, v in zip(OUTPUT_NAMES, values)}
        return decode(
            outputs,
            inputs.height,
            inputs.width,
            self.class_names,
            scale_x=inputs.scale_x,
            scale_y=inputs.scale_y,
            score_threshold=self.score_threshold,
            max_instances=self.max_instances,
            mask_threshold=self.mask_threshold,
            source="torch model",
        )
