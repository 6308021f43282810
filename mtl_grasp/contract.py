"""The ONNX model contract shared by the exporter (training/export) and the runtime (mtl_grasp/runtime).

Everything both sides must agree on lives here: tensor names, dtypes and axes, the normalisation the
model applies internally, depth units, class names and the metadata keys stored in the ONNX file.

Design: the network normalises its own inputs (the constants below are baked into the graph), so the
runtime only converts images to float tensors. The training stack uses the same constants, so there
is exactly one definition of the normalisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

CONTRACT_VERSION = "1"

# ---- inputs (batch size 1, dynamic height/width) -------------------------------------------------
INPUT_RGB = "rgb"  # float32 [1, 3, H, W], RGB channel order, values in [0, 1]
INPUT_DEPTH = "depth"  # float32 [1, 1, H, W], metres; 0 marks an invalid pixel (no return / NaN)
INPUT_NAMES = (INPUT_RGB, INPUT_DEPTH)

# ---- outputs (N detections after score filtering and NMS) -----------------------------------------
OUTPUT_BOXES = "boxes"  # float32 [N, 4] amodal boxes x1, y1, x2, y2 in input pixels
OUTPUT_SCORES = "scores"  # float32 [N] in [0, 1], sorted descending
OUTPUT_LABELS = "labels"  # int64 [N], 1-based index into class_names (0 is background, never output)
OUTPUT_VISIBLE_MASKS = "visible_masks"  # float32 [N, M, M] probabilities in box coordinates (M = 28)
OUTPUT_AMODAL_MASKS = "amodal_masks"  # float32 [N, M, M] probabilities in box coordinates
OUTPUT_OCCLUSION = "occlusion"  # float32 [N] probability that the object is occluded
OUTPUT_NAMES = (
    OUTPUT_BOXES,
    OUTPUT_SCORES,
    OUTPUT_LABELS,
    OUTPUT_VISIBLE_MASKS,
    OUTPUT_AMODAL_MASKS,
    OUTPUT_OCCLUSION,
)
ROI_MASK_SIZE = 28

# ---- normalisation applied inside the model -------------------------------------------------------
RGB_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, RGB order, on [0, 1] images
RGB_STD = (0.229, 0.224, 0.225)
DEPTH_MIN_M = 0.2  # valid depth is clipped to [DEPTH_MIN_M, DEPTH_MAX_M] metres ...
DEPTH_MAX_M = 2.0
DEPTH_MEAN_M = 0.65  # ... then standardised; bin-picking scenes are ~0.5-0.8 m from the camera
DEPTH_STD_M = 0.15
# invalid depth (0 in the input) becomes 0 after standardisation, i.e. "at the mean depth"

# ---- semantics ---------------------------------------------------------------------------------
OCCLUDED_RATE_THRESHOLD = 0.05  # an object is "occluded" if occluded_rate >= this (UOAIS)
CLASS_AGNOSTIC_NAMES = ("object",)

# ---- metadata stored in the ONNX file (all values are strings) -----------------------------------
META_CONTRACT_VERSION = "mtl_grasp.contract_version"
META_CLASS_NAMES = "mtl_grasp.class_names"  # JSON list
META_TRAIN_IMAGE_SIZE = "mtl_grasp.train_image_size"  # int, square training size
META_NORMALIZATION = "mtl_grasp.normalization"  # JSON dict, see normalization_dict()
META_CONFIG_HASH = "mtl_grasp.config_hash"  # sha256 of the resolved training config
# optional (not in META_KEYS; older files lack them):
META_QUANTIZATION = "mtl_grasp.quantization"  # "none" or e.g. "int8-qdq-per-channel" (training.export)
META_TEST_BUDGET = "mtl_grasp.test_budget"  # JSON dict of the test-time budget baked into the graph
META_KEYS = (
    META_CONTRACT_VERSION,
    META_CLASS_NAMES,
    META_TRAIN_IMAGE_SIZE,
    META_NORMALIZATION,
    META_CONFIG_HASH,
)


def normalization_dict() -> dict[str, object]:
    """The normalisation constants as stored in (and checked against) the ONNX metadata."""
    return {
        "rgb_mean": list(RGB_MEAN),
        "rgb_std": list(RGB_STD),
        "depth_min_m": DEPTH_MIN_M,
        "depth_max_m": DEPTH_MAX_M,
        "depth_mean_m": DEPTH_MEAN_M,
        "depth_std_m": DEPTH_STD_M,
    }


@dataclass(frozen=True)
class ModelMetadata:
    """Metadata an exported model carries; `to_dict`/`from_dict` map it to ONNX metadata_props."""

    class_names: tuple[str, ...] = CLASS_AGNOSTIC_NAMES
    train_image_size: int = 512
    config_hash: str = ""
    contract_version: str = CONTRACT_VERSION
    normalization: Mapping[str, object] = field(default_factory=normalization_dict)

    def to_dict(self) -> dict[str, str]:
        return {
            META_CONTRACT_VERSION: self.contract_version,
            META_CLASS_NAMES: json.dumps(list(self.class_names)),
            META_TRAIN_IMAGE_SIZE: str(int(self.train_image_size)),
            META_NORMALIZATION: json.dumps(dict(self.normalization), sort_keys=True),
            META_CONFIG_HASH: self.config_hash,
        }

    @classmethod
    def from_dict(cls, props: Mapping[str, str], source: str = "model") -> ModelMetadata:
        """Parse ONNX metadata_props; raise ValueError naming `source` and the bad key."""
        missing = [k for k in META_KEYS if k not in props]
        if missing:
            raise ValueError(
                f"{source}: ONNX metadata lacks {missing}; expected a model exported by "
                f"`python -m training export` (contract version {CONTRACT_VERSION})"
            )
        try:
            names = tuple(json.loads(props[META_CLASS_NAMES]))
            size = int(props[META_TRAIN_IMAGE_SIZE])
            norm = json.loads(props[META_NORMALIZATION])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{source}: malformed mtl_grasp metadata: {exc}") from exc
        return cls(
            class_names=names,
            train_image_size=size,
            config_hash=props[META_CONFIG_HASH],
            contract_version=props[META_CONTRACT_VERSION],
            normalization=norm,
        )

    def check_compatible(self, source: str = "model") -> None:
        """Raise ValueError when this metadata does not match the contract this code implements."""
        if self.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"{source}: contract version {self.contract_version!r} but this mtl_grasp implements "
                f"version {CONTRACT_VERSION!r}; re-export the model with this version of the exporter"
            )
        if dict(self.normalization) != json.loads(json.dumps(normalization_dict())):
            raise ValueError(
                f"{source}: normalisation {dict(self.normalization)} differs from the contract's "
                f"{normalization_dict()}"
            )
        if not self.class_names:
            raise ValueError(f"{source}: class_names is empty")
