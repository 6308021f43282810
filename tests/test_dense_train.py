"""The torch dataset, augmentation, a few plain-torch optimisation steps and scoring on synthetic data.

This is a sanity check of the family's pieces; the real training runs through the engine (phase 2).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_grasp.data.dense import EmptyTargetError, open_reader
from mtl_grasp.data.dense.synth import generate
from training.cli import main
from training.data.dense import DenseDataset, collate_dense, hflip, scale_crop
from training.model.amodal_rcnn import RandomInitWarning
from training.model.dense import DenseModelConfig, DenseMTLNet
from training.model.dense.evaluate import evaluate_dense


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dense-train")
    generate("nyuv2", root / "nyu", train=4, val=2, seed=0, size=(48, 64))
    generate("cityscapes3", root / "cs3", train=4, val=2, seed=0, size=(48, 96))
    return root


def _model(tasks: tuple[str, ...], num_classes: int) -> DenseMTLNet:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return DenseMTLNet(DenseModelConfig(tasks=tasks, num_classes=num_classes, head_channels=32))


@pytest.mark.parametrize(("dataset", "folder"), [("nyuv2", "nyu"), ("cityscapes3", "cs3")])
def test_a_few_adam_steps_lower_every_task_loss(data: Path, dataset: str, folder: str) -> None:
    reader = open_reader(
        dataset, str(data / folder), "train", **({"size": (48, 96)} if folder == "cs3" else {})
    )
    ds = DenseDataset(reader)
    batch = collate_dense([ds[i] for i in range(len(ds))])
    model = _model(reader.tasks, reader.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(16):
        losses = model(batch.image, batch.targets)
        first = first or {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    with torch.no_grad():  # the same batch after the steps (train mode: batch statistics, as the steps)
        last = {k: v.item() for k, v in model(batch.image, batch.targets).items()}
    for task in reader.tasks:
        assert last[task] < 0.85 * first[task], (task, first, last)


def test_evaluate_dense_scores_the_validation_split(data: Path) -> None:
    ds = DenseDataset(open_reader("nyuv2", str(data / "nyu"), "val"))
    model = _model(("segmentation", "depth", "normal"), 13)
    model.train()
    batches = [collate_dense([ds[0]]), collate_dense([ds[1]])]
    metrics = evaluate_dense(model, batches)
    assert model.training  # restored
    assert set(metrics) >= {"segmentation/miou", "depth/abs_err", "normal/median", "normal/within_30"}
    assert all(np.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["segmentation/pixel_acc"] <= 1.0 and 0.0 <= metrics["normal/median"] <= 180.0


def test_dataset_items_and_batch_layout(data: Path) -> None:
    ds = DenseDataset(open_reader("cityscapes3", str(data / "cs3"), "train", size=(48, 96)))
    item = ds[0]
    assert item["image"].shape == (3, 48, 96) and item["segmentation"].dtype == torch.int64
    assert item["depth"].shape == (1, 48, 96) and item["instance"].shape == (2, 48, 96)
    assert item["instance_mask"].dtype == torch.bool and item["instance_mask"].shape == (1, 48, 96)
    batch = collate_dense([ds[0], ds[1]])
    assert len(batch) == 2 and batch.size == (48, 96) and batch.indices.tolist() == [0, 1]
    assert set(batch.targets) == {"segmentation", "depth", "instance", "instance_mask"}
    only_depth = DenseDataset(ds.reader, tasks=("depth",))[0]
    assert set(only_depth) == {"image", "depth", "index"}
    with pytest.raises(ValueError, match=r"tasks: \['normal'\] not in this dataset's tasks"):
        DenseDataset(ds.reader, tasks=("normal",))


def test_augmentation_keeps_targets_consistent(data: Path) -> None:
    ds = DenseDataset(open_reader("nyuv2", str(data / "nyu"), "train"), augment=True, seed=3)
    item = DenseDataset(ds.reader)[1]
    flipped = hflip(item)
    torch.testing.assert_close(flipped["normal"][0], -item["normal"][0].flip(-1))
    torch.testing.assert_close(flipped["depth"], item["depth"].flip(-1))
    zoomed = scale_crop(item, 1.5, 4, 8, "depth")
    h, w = int(48 / 1.5), int(64 / 1.5)
    centre = item["depth"][0, 4 : 4 + h, 8 : 8 + w]
    # nearest-neighbour zoom: every depth value comes from the crop, divided by the scale
    assert set(torch.unique(zoomed["depth"]).tolist()) <= set((torch.unique(centre) / 1.5).tolist())
    assert set(torch.unique(zoomed["segmentation"]).tolist()) <= set(
        torch.unique(item["segmentation"]).tolist()
    )
    disparity = scale_crop(item, 1.5, 4, 8, "disparity")["depth"]
    torch.testing.assert_close(disparity, zoomed["depth"] * 1.5 * 1.5)
    # the same (seed, epoch, index) draws the same augmentation; another epoch may not
    torch.testing.assert_close(ds[2]["image"], ds[2]["image"])
    draws = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.add(float(ds[2]["image"].sum()))
    assert len(draws) > 1


def test_all_invalid_samples_raise_by_default_and_are_skipped_when_asked(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "nyu"
    generate("nyuv2", root, train=3, val=0, seed=0, size=(16, 16))
    np.save(root / "train/depth/1.npy", np.zeros((16, 16, 1), np.float32))
    reader = open_reader("nyuv2", str(root), "train")
    with pytest.raises(EmptyTargetError, match=r"depth/1\.npy: depth has no valid pixel"):
        DenseDataset(reader)[1]
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 samples"):
        ds = DenseDataset(reader, skip_empty=True)
    assert len(ds) == 2 and [i for i, _ in ds.skipped] == [1] and ds[1]["index"].item() == 2


def test_synth_dense_command_writes_readable_data(tmp_path: Path, capsys) -> None:
    assert main(["synth-dense", "--dataset", "cityscapes", "--out", str(tmp_path), "--train", "2",
                 "--val", "1", "--size", "16x32"]) == 0  # fmt: skip
    assert "wrote 2 train + 1 val cityscapes samples" in capsys.readouterr().out
    assert len(open_reader("cityscapes", str(tmp_path), "val")) == 1
    with pytest.raises(SystemExit):
        main(["synth-dense", "--dataset", "cityscapes", "--out", str(tmp_path), "--size", "16by32"])
