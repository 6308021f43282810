"""mtl_grasp.evaluation: COCO BBox/VMask/AMask metrics and occlusion metrics on hand-made scenes."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mtl_grasp.evaluation import coco_results, evaluate, gt_for, metric_keys, occlusion_metrics

H, W = 64, 80


def _rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


# (amodal rect, visible rect) per object; object 1 is partly hidden behind object 0 (occluded_rate .5)
OBJECTS = {
    1: [((5, 5, 25, 25), (5, 5, 25, 25)), ((20, 10, 40, 30), (25, 10, 40, 30))],
    2: [((40, 30, 70, 60), (40, 30, 70, 60)), ((2, 40, 22, 60), (2, 40, 12, 60))],
}


def make_gt() -> dict:
    images, anns = [], []
    for image_id, objs in OBJECTS.items():
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": H, "width": W})
        for amodal_box, visible_box in objs:
            amodal, visible = _rect(*amodal_box), _rect(*visible_box)
            rate = 1.0 - visible.sum() / amodal.sum()
            x1, y1, x2, y2 = amodal_box
            anns.append({
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(amodal.sum()),
                "iscrowd": 0,
                "segmentation": _rle(amodal),
                "visible_mask": _rle(visible),
                "occluded_rate": float(rate),
            })
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}


def gt_predictions(occlusion_probs: dict[int, list[float]] | None = None) -> dict[int, dict]:
    """The ground truth written as predictions (score 1 down to lower scores, as a detector would)."""
    preds = {}
    for image_id, objs in OBJECTS.items():
        n = len(objs)
        occ = [1.0 - i for i in range(n)] if occlusion_probs is None else occlusion_probs[image_id]
        preds[image_id] = {
            "boxes": np.array([a for a, _ in objs], dtype=np.float32),
            "scores": np.linspace(0.9, 0.8, n).astype(np.float32),
            "labels": np.ones(n, dtype=np.int64),
            "visible_masks": np.stack([_rect(*v) for _, v in objs]),
            "amodal_masks": np.stack([_rect(*a) for a, _ in objs]),
            "occlusion": np.array(occ, dtype=np.float32),
        }
    return preds


def _true_occlusion() -> dict[int, list[float]]:
    # object 0 of each image is unoccluded, object 1 occluded
    return {1: [0.1, 0.9], 2: [0.2, 0.7]}


def test_ground_truth_as_predictions_scores_one():
    metrics = evaluate(make_gt(), gt_predictions(_true_occlusion()))
    for kind in ("bbox", "vmask", "amask"):
        for name in ("mAP", "AP50", "AP75", "mAR"):
            assert metrics[f"{kind}/{name}"] == pytest.approx(1.0), f"{kind}/{name}"
    assert metrics["occ/accuracy"] == 1.0 and metrics["occ/f1"] == 1.0
    assert metrics["occ/matched"] == 4.0
    assert set(metric_keys()) <= set(metrics)


def test_known_ap_one_hit_one_false_positive_one_miss():
    gt = make_gt()
    gt["images"] = gt["images"][:1]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] == 1]
    hit, fp = (5, 5, 25, 25), (50, 40, 70, 60)
    pred = {
        "boxes": np.array([hit, fp], dtype=np.float32),
        "scores": np.array([0.9, 0.8], dtype=np.float32),
        "labels": np.ones(2, dtype=np.int64),
        "visible_masks": np.stack([_rect(*hit), _rect(*fp)]),
        "amodal_masks": np.stack([_rect(*hit), _rect(*fp)]),
        "occlusion": np.zeros(2, dtype=np.float32),
    }
    metrics = evaluate(gt, {1: pred})
    # precision 1 up to recall 0.5 (51 of the 101 recall points), 0 after; identical at every IoU
    expected = 51 / 101
    for kind in ("bbox", "amask"):
        assert metrics[f"{kind}/mAP"] == pytest.approx(expected)
        assert metrics[f"{kind}/AP50"] == pytest.approx(expected)
        assert metrics[f"{kind}/mAR"] == pytest.approx(0.5)
    # the false positive ranked first halves the precision at recall 0.5
    pred["scores"] = np.array([0.5, 0.8], dtype=np.float32)
    metrics = evaluate(gt, {1: pred}, kinds=("bbox",), occlusion=False)
    assert metrics["bbox/mAP"] == pytest.approx(0.5 * 51 / 101)
    assert "occ/f1" not in metrics


def test_matches_pycocotools_run_directly_on_files(tmp_path):
    gt = make_gt()
    preds = gt_predictions()
    # perturb: shift masks/boxes so the IoUs are between the thresholds, add a low-scored duplicate
    p = preds[2]
    p["boxes"] = p["boxes"] + np.array([3, 2, 3, 2], dtype=np.float32)
    p["amodal_masks"] = np.roll(p["amodal_masks"], 3, axis=2)
    p["visible_masks"] = np.roll(p["visible_masks"], 2, axis=1)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    ours = evaluate(gt_path, preds)
    for kind, iou_type in (("bbox", "bbox"), ("amask", "segm"), ("vmask", "segm")):
        kind_gt = tmp_path / f"gt_{kind}.json"
        kind_gt.write_text(json.dumps(gt_for(gt, kind)))
        res = tmp_path / f"{kind}.json"
        res.write_text(json.dumps(coco_results(preds, gt, kind)))
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(str(kind_gt))
            ev = COCOeval(coco_gt, coco_gt.loadRes(str(res)), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ours[f"{kind}/mAP"] == pytest.approx(ev.stats[0])
        assert ours[f"{kind}/AP75"] == pytest.approx(ev.stats[2])
        assert ours[f"{kind}/mAR"] == pytest.approx(ev.stats[8])
        assert ours[f"{kind}/APs"] == pytest.approx(ev.stats[3])
    assert 0.0 < ours["amask/mAP"] < 1.0  # the perturbation really changed something


def test_vmask_uses_visible_masks_and_drops_fully_hidden_objects():
    gt = make_gt()
    hidden = dict(gt["annotations"][0], id=99, visible_mask=_rle(np.zeros((H, W), bool)))
    gt["annotations"].append(hidden)
    vm = gt_for(gt, "vmask")
    assert 99 not in [a["id"] for a in vm["annotations"]]
    ann = vm["annotations"][1]  # occluded object of image 1: visible 15x20
    assert ann["area"] == 15 * 20 and ann["bbox"] == [25.0, 10.0, 15.0, 20.0]
    # amodal masks predicted as visible masks lose VMask AP but not AMask AP
    preds = gt_predictions()
    for p in preds.values():
        p["visible_masks"] = p["amodal_masks"]
    metrics = evaluate(make_gt(), preds, occlusion=False)
    assert metrics["amask/mAP"] == pytest.approx(1.0)
    assert metrics["vmask/mAP"] < 0.9


def test_no_predictions_gives_zero():
    metrics = evaluate(make_gt(), {})
    assert metrics["bbox/mAP"] == 0.0 and metrics["amask/mAR"] == 0.0
    assert metrics["occ/matched"] == 0.0 and metrics["occ/accuracy"] == 0.0


def test_occlusion_metrics_known_counts():
    # image 1: both predicted occluded -> 1 TP + 1 FP; image 2: both predicted not occluded -> 1 TN + 1 FN
    preds = gt_predictions({1: [0.9, 0.8], 2: [0.1, 0.2]})
    m = occlusion_metrics(make_gt(), preds)
    assert m["occ/accuracy"] == pytest.approx(0.5)
    assert m["occ/precision"] == pytest.approx(0.5)
    assert m["occ/recall"] == pytest.approx(0.5)
    assert m["occ/f1"] == pytest.approx(0.5)
    # a prediction with amodal IoU < 0.5 is not matched and does not count
    preds[1]["amodal_masks"] = np.roll(preds[1]["amodal_masks"], 40, axis=2)
    m = occlusion_metrics(make_gt(), preds)
    assert m["occ/matched"] == 2.0 and m["occ/gt"] == 4.0


def test_bad_predictions_are_named_errors():
    preds = gt_predictions()
    preds[1]["visible_masks"] = preds[1]["visible_masks"][:, :10]
    with pytest.raises(ValueError, match=r"predictions\[1\]\.visible_masks: expected shape"):
        evaluate(make_gt(), preds)
    with pytest.raises(ValueError, match="image id 7 is not in the GT"):
        evaluate(make_gt(), {7: gt_predictions()[1]})
    bad = gt_predictions()
    bad[1]["labels"] = np.array([0, 1])
    with pytest.raises(ValueError, match="labels: expected 1-based"):
        evaluate(make_gt(), bad)
    with pytest.raises(ValueError, match="kind: expected one of"):
        evaluate(make_gt(), gt_predictions(), kinds=("segm",))


def test_evaluation_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import mtl_grasp.evaluation\n"
        "assert 'training' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
