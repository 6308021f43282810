"""The dense family on the engine: its config section, the shipped configs, a `train` run through the CLI
with FD/GDS/GMS, evaluation of its checkpoint, a single-task baseline and the export refusal."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from dense_fixtures import CITYSCAPES3, tiny_dense

from mtl_grasp.data.dense.synth import SYNTH_MARKER, generate_once
from mtl_grasp.evaluation.dense import METRIC_DIRECTIONS, metric_keys
from training import families, rundir
from training.checkpoint import MODEL_KEYS, read_checkpoint
from training.cli import main as cli_main
from training.config import TrainConfig, config_from_dict, load_config
from training.engine.protocols import Evaluator, MTLModel
from training.families.dense_config import DenseConfig

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
NYU_TASKS = ("segmentation", "depth", "normal")
NYU_METRICS = metric_keys(NYU_TASKS)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dataset", "size", "batch", "tasks"),
    [
        ("nyuv2", "nyuv2", (288, 384), 32, ("segmentation", "depth", "normal")),
        ("cityscapes3", "cityscapes3", (256, 512), 32, ("segmentation", "depth", "instance")),
        ("cityscapes", "cityscapes", (128, 256), 64, ("segmentation", "depth")),
    ],
)
def test_shipped_benchmark_configs_have_the_studies_setup(name, dataset, size, batch, tasks) -> None:
    cfg = load_config(ROOT / f"config/train/{name}.yaml")
    assert cfg.family == "dense" and cfg.dense.dataset == dataset and cfg.dense.size == size
    assert cfg.train.batch_size == batch and cfg.dense.model.tasks == tasks
    assert cfg.optim.name == "adam" and cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.dense.model.head == "ppm" and cfg.diagnostics.every > 0
    assert families.for_config(cfg).loss_names == tasks


@pytest.mark.parametrize("name", ["nyuv2-synthetic", "cityscapes-synthetic"])
def test_synthetic_configs_generate_their_data_on_the_cpu(name) -> None:
    cfg = load_config(ROOT / f"config/train/{name}.yaml")
    assert cfg.dense.synth.train > 0 and cfg.dense.synth.val > 0 and cfg.train.device == "cpu"
    assert cfg.train.eval_at_start and cfg.diagnostics.every > 0


def test_the_bin_picking_config_keeps_its_meaning() -> None:
    cfg = load_config(ROOT / "config/train/synthetic.yaml")
    assert cfg.family == "amodal" and cfg.dense == DenseConfig()
    assert families.for_config(cfg).loss_names == families.get("amodal").loss_names
    assert "family" not in yaml.safe_load((ROOT / "config/train/synthetic.yaml").read_text())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["family=densee"], "unknown model family 'densee'; did you mean 'dense'"),
        (["dense.dataset=nyuv2", "dense.size=[8, 8]"], "dense: read only by family 'dense'"),
        (["family=dense", "model.image_size=64"], "model: read only by the amodal family"),
        (["family=dense", "data.synth.scenes=3"], "data.synth: read only by the amodal family"),
        (["family=dense", "dense.modle.head=ppm"], "dense.modle: unknown config key"),
        (["family=dense", "dense.eval_batch_size=1.5"], "dense.eval_batch_size: expected an int"),
        (["family=dense", "dense.dataset=nyu"], "unknown dense dataset 'nyu'"),
        (["family=dense", "dense.dataset=cityscapes"], "dense.model.tasks: ['normal'] are not tasks"),
        (
            ["family=dense", "dense.dataset=cityscapes", "dense.model.tasks=[depth]"],
            "dense.model.num_classes: the cityscapes dataset has 7 or 19 classes, got 13",
        ),
        (["family=dense", "dense.model.tasks=[depht]"], "unknown ['depht']"),
        (["family=dense", "dense.synth.train=4"], "dense.synth: train and val must both be > 0"),
        (["family=dense", "dense.label_dir=x", "dense.dataset=cityscapes3", "dense.model.tasks=[depth]",
          "dense.model.num_classes=7"], "dense.label_dir: only for the .npy layouts"),  # fmt: skip
    ],
)
def test_bad_dense_config_names_the_key(overrides, message) -> None:
    with pytest.raises(ValueError) as err:
        config_from_dict({}, overrides)
    assert message in str(err.value), str(err.value)


def test_the_resolved_dense_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "config/train/cityscapes3.yaml", ["dense.model.tasks=[instance]"])
    from training.config import dump_config

    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and again.dense.model.tasks == ("instance",)
    assert isinstance(TrainConfig().dense, DenseConfig)


# ---- data on demand --------------------------------------------------------------------------------


def test_synthetic_data_is_generated_once_and_never_over_other_files(tmp_path: Path) -> None:
    root = tmp_path / "nyu"
    assert generate_once("nyuv2", root, 2, 1, size=(16, 16)) is True
    assert (root / SYNTH_MARKER).is_file() and not list(tmp_path.glob("nyu.tmp-*"))
    stamp = (root / "train/image/0.npy").stat().st_mtime_ns
    assert generate_once("nyuv2", root, 2, 1, size=(16, 16)) is False
    assert (root / "train/image/0.npy").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="generated with .* not the requested"):
        generate_once("nyuv2", root, 3, 1, size=(16, 16))
    real = tmp_path / "real"
    (real / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="refusing to write synthetic samples"):
        generate_once("nyuv2", real, 2, 1, size=(16, 16))


def test_npy_size_mismatch_is_an_error_naming_dense_size(tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_dense(tmp_path / "nyu", tmp_path / "run", dense={"size": [32, 32]}))
    family = families.for_config(cfg)
    family.prepare_data(cfg)
    with pytest.raises(ValueError, match=r"dense.size: \[32, 32\] was asked for, .* stores 24x32"):
        family.build_dataset(cfg, "train", augment=False)


def test_the_family_satisfies_the_engine_protocols(tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_dense(tmp_path / "cs", tmp_path / "run", dataset=CITYSCAPES3))
    family = families.for_config(cfg)
    family.prepare_data(cfg)
    model = family.build_model(cfg, CPU)
    assert isinstance(model, MTLModel)
    shared, task = {id(p) for p in model.shared_parameters()}, {id(p) for p in model.task_parameters()}
    assert not shared & task and shared | task == {id(p) for p in model.module.parameters()}
    evaluator = family.build_evaluator(cfg, CPU, "val")
    assert isinstance(evaluator, Evaluator)
    assert evaluator.keys == ("segmentation/miou", "segmentation/pixel_acc", "depth/abs_err",
                              "depth/rel_err", "instance/l1")  # fmt: skip
    batch = family.collate([family.build_dataset(cfg, "train", False)[i] for i in range(2)])
    losses = model.heads(model.features(batch.to(CPU)), batch)
    assert list(losses) == list(family.loss_names) and all(torch.isfinite(v) for v in losses.values())
    model.module.train()
    metrics = evaluator(model.module)
    assert tuple(metrics) == evaluator.keys and model.module.training


# ---- a run through the CLI -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, Path]:
    """A 3-step PCGrad (feature level) NYU run with diagnostics at both levels and an evaluation at
    step 0, and a 2-step single-task depth run, both through `python -m training train`."""
    base = tmp_path_factory.mktemp("dense-cli")
    mtl = tiny_dense(
        base / "nyu", base / "mtl", mtl={"name": "pcgrad", "level": "feature"},
        train={"steps": 3, "eval_at_start": True},
        diagnostics={"every": 1, "levels": ["parameter", "feature"]},
    )  # fmt: skip
    (base / "mtl.yaml").write_text(yaml.safe_dump(mtl))
    assert cli_main(["train", "--config", str(base / "mtl.yaml")]) == 0
    single = ["dense.model.tasks=[depth]", f"run_dir={base / 'depth'}"]
    assert cli_main(["train", "--config", str(base / "mtl.yaml"), *single]) == 0
    return {"mtl": base / "mtl", "depth": base / "depth", "data": base / "nyu"}


def test_cli_run_directory_of_a_dense_run(cli_runs) -> None:
    run = rundir.RunDir(cli_runs["mtl"])
    rows = _rows(run.metrics_csv)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for task in ("segmentation", "depth", "normal"):
        assert all(math.isfinite(float(r[rundir.loss_key(task)])) for r in rows)
    diag = [rundir.DIAG_FD, *rundir.similarity_keys("parameter"), *rundir.similarity_keys("feature")]
    for key in diag:  # FD / GDS / GMS / CR on every step, w.r.t. Z = the backbone output
        assert all(math.isfinite(float(r[key])) for r in rows), key
    assert all(-1.0 <= float(r["diag/gds_feature"]) <= 1.0 for r in rows)
    evals = _rows(run.eval_csv)
    assert [int(r["step"]) for r in evals] == [0, 3] and list(evals[0])[1:] == list(NYU_METRICS)
    final = json.loads(run.metrics_json.read_text())
    assert final["method"] == "pcgrad" and final["level"] == "feature" and final["step"] == 3
    assert set(NYU_METRICS) <= set(final) and 0.0 <= final["segmentation/miou"] <= 1.0
    config = yaml.safe_load(run.config.read_text())
    assert config["family"] == "dense" and config["dense"]["model"]["tasks"] == list(NYU_TASKS)
    assert (cli_runs["data"] / SYNTH_MARKER).is_file()  # generated on demand by the first run


def test_a_single_task_baseline_is_the_same_trainer_with_one_task(cli_runs) -> None:
    run = rundir.RunDir(cli_runs["depth"])
    header = list(_rows(run.metrics_csv)[0])
    assert [h for h in header if h.startswith(rundir.LOSS_PREFIX)] == ["loss/depth"]
    assert [h for h in header if h.startswith(rundir.WEIGHT_PREFIX)] == ["weight/depth"]
    assert list(_rows(run.eval_csv)[0]) == ["step", "depth/abs_err", "depth/rel_err"]
    weights = read_checkpoint(run.root, required=MODEL_KEYS)["model"]
    assert {k.split(".")[1] for k in weights if k.startswith("decoders.")} == {"depth"}  # one head


def test_evaluate_command_picks_the_family_from_the_run(cli_runs, tmp_path, capsys) -> None:
    out = tmp_path / "m.json"
    argv = ["evaluate", "--checkpoint", str(cli_runs["mtl"]), "--out", str(out), "--device", "cpu"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "segmentation/miou" in printed and "lower is better" in printed
    metrics = json.loads(out.read_text())
    final = json.loads(rundir.RunDir(cli_runs["mtl"]).metrics_json.read_text())
    assert list(metrics) == list(NYU_METRICS)
    for key in NYU_METRICS:  # the same weights on the same split: the numbers of the run's last evaluation
        assert metrics[key] == pytest.approx(final[key], rel=1e-5, abs=1e-7), key
    assert all(key in METRIC_DIRECTIONS for key in metrics)


def test_export_refuses_a_dense_checkpoint(cli_runs, tmp_path, capsys) -> None:
    assert cli_main(["export", "--checkpoint", str(cli_runs["mtl"]), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "'dense'-family model; ONNX export" in capsys.readouterr().err
