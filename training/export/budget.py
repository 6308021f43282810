"""The test-time budget: how much work the exported graph does per frame.

    python -m training export --checkpoint CKPT --out model.onnx --budget fast
    python -m training export ... --budget proposals=300,detections=50

A budget is baked into the ONNX graph at export (torchvision's RPN top-k and the ROI heads' top-k are
constants of the traced graph). Its fields:
- `proposals`: RPN proposals per image after NMS (`rpn_post_nms_top_n_test`): the box head's 4 convs
  and ROI Align run on every one of them.
- `detections`: detections per image (`detections_per_image`): the visible / amodal mask heads and the
  occlusion head run on every one of them.
- `min_score`: the ROI heads' score threshold (`score_thresh`): detections below it get no masks.
Named budgets live in config/runtime.yaml; their measured speed and accuracy are in docs/benchmarks.md.
The mask resolution is not a budget of this architecture (docs/runtime.md, "Test-time budget").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from mtl_grasp.suggest import did_you_mean

RUNTIME_CONFIG = Path(__file__).resolve().parents[2] / "config" / "runtime.yaml"
FIELDS = ("proposals", "detections", "min_score")


@dataclass(frozen=True)
class TestBudget:
    """Per-frame work of the exported graph; None keeps the model config's value."""

    __test__ = False  # not a pytest test class

    proposals: int | None = None
    detections: int | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        for name in ("proposals", "detections"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"budget.{name}: expected a positive int, got {value!r}")
        if self.min_score is not None and not 0.0 <= float(self.min_score) < 1.0:
            raise ValueError(f"budget.min_score: expected a number in [0, 1), got {self.min_score!r}")

    def to_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def named_budgets(path: str | Path = RUNTIME_CONFIG) -> dict[str, TestBudget]:
    """The named budgets of config/runtime.yaml."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {
        name: parse_budget_fields(fields, f"{path}: budgets.{name}")
        for name, fields in data["budgets"].items()
    }


def parse_budget_fields(fields: dict, where: str = "budget") -> TestBudget:
    unknown = [k for k in fields if k not in FIELDS]
    if unknown:
        hint = did_you_mean(unknown[0], FIELDS)
        raise ValueError(f"{where}: unknown field {unknown[0]!r}{hint} (fields: {list(FIELDS)})")
    return TestBudget(**fields)


def parse_budget(text: str, path: str | Path = RUNTIME_CONFIG) -> TestBudget:
    """A named budget of config/runtime.yaml, or `key=value,...` of `FIELDS`."""
    if "=" not in text:
        budgets = named_budgets(path)
        if text not in budgets:
            hint = did_you_mean(text, budgets)
            raise ValueError(
                f"--budget: unknown budget {text!r}{hint} (named: {sorted(budgets)}; or key=value,...)"
            )
        return budgets[text]
    fields: dict[str, float | int] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        try:
            fields[key.strip()] = float(value) if key.strip() == "min_score" else int(value)
        except ValueError as exc:
            raise ValueError(f"--budget: expected key=value with a number, got {item!r}") from exc
    return parse_budget_fields(fields, "--budget")


def apply_budget(model, budget: TestBudget):
    """Set `budget` on an AmodalRCNN's RPN and ROI heads (and its config) in place; returns the model."""
    if budget.proposals is not None:
        model.rpn._post_nms_top_n = {**model.rpn._post_nms_top_n, "testing": budget.proposals}
        model.config = replace(model.config, rpn_post_nms_top_n_test=budget.proposals)
    if budget.detections is not None:
        model.roi_heads.detections_per_img = budget.detections
        model.config = replace(model.config, detections_per_image=budget.detections)
    if budget.min_score is not None:
        model.roi_heads.score_thresh = float(budget.min_score)
        model.config = replace(model.config, score_thresh=float(budget.min_score))
    return model
