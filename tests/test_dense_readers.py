"""Dense-benchmark readers on generated files in both layouts and on hand-made broken files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtl_grasp.data import DataError
from mtl_grasp.data.dense import CityscapesReader, EmptyTargetError, NpyDenseReader, open_reader
from mtl_grasp.data.dense.cityscapes import class_lut, discover
from mtl_grasp.data.dense.layout import CS_STUDY_DEPTH_DIVISOR, dataset_spec
from mtl_grasp.data.dense.synth import generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dense")
    generate("nyuv2", root / "nyu", train=3, val=2, seed=1, size=(32, 48))
    generate("cityscapes", root / "cs", train=3, val=1, seed=1, size=(32, 64))
    generate("cityscapes3", root / "cs3", train=4, val=1, seed=1, size=(48, 96))
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")
    }


def test_generated_nyuv2_reads_back_in_the_layout_units(generated: Path) -> None:
    reader = NpyDenseReader(generated / "nyu", "train", "nyuv2")
    assert len(reader) == 3 and len(NpyDenseReader(generated / "nyu", "val", "nyuv2")) == 2
    assert np.load(generated / "nyu/train/depth/0.npy").shape == (32, 48, 1)  # MTAN stores [H, W, 1]
    for i in range(len(reader)):
        s = reader.read(i)
        assert s.image.shape == (32, 48, 3) and s.image.dtype == np.float32
        assert s.image.min() >= 0.0 and s.image.max() <= 1.0
        assert s.label.dtype == np.int64 and set(np.unique(s.label)) <= set(range(-1, 13))
        assert s.depth.shape == (32, 48) and s.depth.min() >= 0 and (s.depth > 0).mean() > 0.5
        norm = np.linalg.norm(s.normal, axis=-1)
        valid = norm > 0
        np.testing.assert_allclose(norm[valid], 1.0, atol=1e-5)
        # depth and normals are invalid at exactly the same pixels
        np.testing.assert_array_equal(valid, s.depth > 0)


def test_generation_is_deterministic_per_seed_and_sample(generated: Path, tmp_path: Path) -> None:
    generate("nyuv2", tmp_path / "a", train=3, val=2, seed=1, size=(32, 48))
    assert _digest(tmp_path / "a") == _digest(generated / "nyu")
    generate("nyuv2", tmp_path / "b", train=1, val=0, seed=1, size=(32, 48))  # fewer samples: same sample 0
    assert (tmp_path / "b/train/image/0.npy").read_bytes() == (
        generated / "nyu/train/image/0.npy"
    ).read_bytes()
    generate("nyuv2", tmp_path / "c", train=1, val=0, seed=2, size=(32, 48))
    assert (tmp_path / "c/train/image/0.npy").read_bytes() != (
        generated / "nyu/train/image/0.npy"
    ).read_bytes()


def test_generated_cityscapes_npy_has_seven_classes_and_disparity(generated: Path) -> None:
    reader = open_reader("cityscapes", str(generated / "cs"), "train")
    s = reader.read(0)
    assert s.normal is None and s.instance is None
    assert set(np.unique(s.label)) <= set(range(-1, 7)) and 4 in s.label  # sky is class 4
    assert (s.depth[s.label == 4] == 0).all()  # no disparity in the sky
    assert 0 < s.depth.max() < 1  # raw PNG value / 65535, as MTAN's files


def test_generated_official_cityscapes_decodes_labels_disparity_and_instances(generated: Path) -> None:
    root = generated / "cs3"
    reader = CityscapesReader(root, "train", size=(48, 96))
    files = discover(root, "train")
    assert len(reader) == 4 and files[0].name.startswith("synthtown/")
    for i, f in enumerate(files):
        s = reader.read(i)
        raw = cv2.imread(str(f.disparity), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16
        np.testing.assert_allclose(
            s.depth, np.where(raw > 0, (raw.astype(np.float64) - 1) / 256, 0), rtol=1e-6
        )
        ids = cv2.imread(str(f.label), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(s.label, class_lut(7)[ids])
        inst = cv2.imread(str(f.instance), cv2.IMREAD_UNCHANGED).astype(np.int64)
        assert set(np.unique(s.label[s.instance_mask])) <= {5, 6}  # human, vehicle
        assert not s.instance[~s.instance_mask].any()
        for value in np.unique(inst[s.instance_mask]):  # every instance's offsets average to zero
            np.testing.assert_allclose(s.instance[(inst == value) & s.instance_mask].mean(0), 0.0, atol=1e-6)
    study = CityscapesReader(root, "train", size=(48, 96), depth_encoding="study").read(0)
    raw = cv2.imread(str(files[0].disparity), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(study.depth, raw / CS_STUDY_DEPTH_DIVISOR, rtol=1e-6)


def test_crowd_regions_are_instances_only_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "cs3"
    _official_files(root, ids=np.array([[26000, 26000, 24, 24], [26001, 7, 24, 7]], np.uint16))
    with_crowd = CityscapesReader(root, "train", size=(2, 4)).read(0)
    without = CityscapesReader(root, "train", size=(2, 4), crowd_as_instance=False).read(0)
    np.testing.assert_array_equal(with_crowd.instance_mask, [[1, 1, 1, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(without.instance_mask, [[1, 1, 0, 0], [1, 0, 0, 0]])
    # instance 26000 covers (0,0),(0,1): centroid x = 1/6 of (W - 1) = 3 -> offsets -1/6, +1/6
    np.testing.assert_allclose(with_crowd.instance[0, :2, 1], [-1 / 6, 1 / 6])
    np.testing.assert_allclose(with_crowd.instance[1, 0], [0.0, 0.0])  # a one-pixel instance


def test_resizing_official_maps_keeps_label_and_instance_values(generated: Path) -> None:
    small = CityscapesReader(generated / "cs3", "train", size=(24, 48), num_classes=19).read(1)
    assert small.image.shape == (24, 48, 3) and small.depth.shape == (24, 48)
    assert set(np.unique(small.label)) <= set(range(-1, 19))


# ---- hand-made broken .npy datasets ----------------------------------------------------------------


def _npy_sample(root: Path, index: int = 0, split: str = "train", size=(4, 5), **override) -> None:
    h, w = size
    normal = np.zeros((h, w, 3), np.float32)
    normal[..., 2] = -1.0
    arrays = {
        "image": np.full((h, w, 3), 0.5, np.float32),
        "label": np.zeros((h, w), np.float32),
        "depth": np.ones((h, w, 1), np.float32),
        "normal": normal,
    }
    arrays.update(override)
    for folder, arr in arrays.items():
        if arr is None:
            continue
        path = root / split / folder / f"{index}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr)


def test_hand_made_sample_is_read_exactly(tmp_path: Path) -> None:
    label = np.array([[-1, 0, 12, 3, 3]] * 4, np.float32)
    _npy_sample(tmp_path, image=np.full((4, 5, 3), 255, np.uint8), label=label)
    s = NpyDenseReader(tmp_path, "train", "nyuv2").read(0)
    assert s.image.max() == 1.0 and s.image.dtype == np.float32  # uint8 images are scaled
    np.testing.assert_array_equal(s.label, label.astype(np.int64))
    assert s.depth.shape == (4, 5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"image": np.zeros((3, 4, 5), np.float32)}, r"image must be \[H, W, 3\].*channels first"),
        ({"image": np.full((4, 5, 3), 200.0, np.float32)}, r"\[0, 1\].*0\.\.255 stored as float"),
        ({"label": np.full((4, 5), 13, np.float32)}, r"label values outside 0\.\.12 .*13 \(20 px\)"),
        ({"label": np.full((4, 5), -2, np.int16)}, r"label values outside.*-2"),
        ({"label": np.full((4, 5), 0.5, np.float32)}, "fractional"),
        ({"depth": np.full((4, 5, 1), np.nan, np.float32)}, r"depth has 20 NaN/inf.*0"),
        ({"depth": np.full((4, 5, 1), -1.0, np.float32)}, r"depth must be >= 0"),
        ({"normal": np.ones((4, 5, 3), np.float32)}, r"unit vectors.*lengths in \[1\.732"),
        ({"label": np.zeros((4, 6), np.float32)}, r"differ in size.*label 4x6"),
    ],
)
def test_bad_npy_files_name_the_file_and_the_problem(tmp_path: Path, override: dict, message: str) -> None:
    _npy_sample(tmp_path, **override)
    with pytest.raises(DataError, match=message) as info:
        NpyDenseReader(tmp_path, "train", "nyuv2").read(0)
    assert str(tmp_path) in str(info.value)


def test_all_invalid_depth_or_normals_is_an_empty_target_error(tmp_path: Path) -> None:
    _npy_sample(tmp_path, 0, depth=np.zeros((4, 5, 1), np.float32))
    _npy_sample(tmp_path, 1, normal=np.zeros((4, 5, 3), np.float32))
    reader = NpyDenseReader(tmp_path, "train", "nyuv2")
    with pytest.raises(EmptyTargetError, match=r"depth/0\.npy: depth has no valid pixel"):
        reader.read(0)
    with pytest.raises(EmptyTargetError, match=r"normal/1\.npy: normal has no valid pixel"):
        reader.read(1)
    assert (reader.read(0, allow_empty=True).depth == 0).all()


def test_folder_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing split folder"):
        NpyDenseReader(tmp_path, "train", "nyuv2")
    _npy_sample(tmp_path, 0, normal=None)
    with pytest.raises(DataError, match=r"missing folders \['normal'\]"):
        NpyDenseReader(tmp_path, "train", "nyuv2")
    _npy_sample(tmp_path, 0)
    _npy_sample(tmp_path, 2)
    with pytest.raises(DataError, match=r"image/1\.npy: missing file \(1 of indices 0\.\.2"):
        NpyDenseReader(tmp_path, "train", "nyuv2")
    _npy_sample(tmp_path, 1)
    (tmp_path / "train/depth/7.npy").write_bytes(b"")
    with pytest.raises(DataError, match=r"depth/7\.npy: no matching image/7\.npy"):
        NpyDenseReader(tmp_path, "train", "nyuv2")
    (tmp_path / "train/depth/7.npy").unlink()
    (tmp_path / "train/label/1.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"label/1\.npy: not a readable \.npy array"):
        NpyDenseReader(tmp_path, "train", "nyuv2").read(1)
    np.save(tmp_path / "train/label/1.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"label/1\.npy: not a readable"):
        NpyDenseReader(tmp_path, "train", "nyuv2").read(1)
    with pytest.raises(ValueError, match=r"unknown dense dataset 'nyu'.*did you mean 'nyuv2'"):
        dataset_spec("nyu")
    with pytest.raises(ValueError, match=r"split: expected one of"):
        NpyDenseReader(tmp_path, "test", "nyuv2")


def test_cityscapes_label_folder_of_the_class_count_is_preferred(tmp_path: Path) -> None:
    _npy_sample(tmp_path, 0, normal=None, label=np.full((4, 5), 9, np.float32))  # label/: 19 classes
    (tmp_path / "train/label_7").mkdir()
    np.save(tmp_path / "train/label_7/0.npy", np.full((4, 5), 6, np.float32))
    reader = NpyDenseReader(tmp_path, "train", "cityscapes")
    assert reader.label_dir == "label_7" and (reader.read(0).label == 6).all()
    with pytest.raises(DataError, match=r"label values outside 0\.\.6"):
        NpyDenseReader(tmp_path, "train", "cityscapes", label_dir="label").read(0)


# ---- hand-made official CityScapes folders ----------------------------------------------------------


def _official_files(root: Path, ids: np.ndarray, labels: np.ndarray | None = None, disparity=None) -> None:
    h, w = ids.shape
    label = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8) if labels is None else labels
    disp = np.full((h, w), 2561, np.uint16) if disparity is None else disparity
    stem = "town_000000_000001"
    for folder, suffix, arr in (
        ("leftImg8bit", "_leftImg8bit.png", np.full((h, w, 3), 128, np.uint8)),
        ("gtFine", "_gtFine_labelIds.png", label),
        ("gtFine", "_gtFine_instanceIds.png", ids),
        ("disparity", "_disparity.png", disp),
    ):
        path = root / folder / "train" / "town" / f"{stem}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), arr)


def test_official_bad_files_name_the_file(tmp_path: Path) -> None:
    ids = np.full((2, 4), 7, np.uint16)
    with pytest.raises(DataError, match=r"leftImg8bit/train: missing folder"):
        CityscapesReader(tmp_path, "train", size=(2, 4))
    _official_files(tmp_path, ids, labels=np.full((2, 4), 40, np.uint8))
    with pytest.raises(DataError, match=r"labelIds\.png: label ids \[40\] are not CityScapes label ids"):
        CityscapesReader(tmp_path, "train", size=(2, 4)).read(0)
    _official_files(tmp_path, ids, disparity=np.full((2, 4), 9, np.uint8))
    with pytest.raises(DataError, match=r"disparity\.png: disparity must be uint16, found uint8"):
        CityscapesReader(tmp_path, "train", size=(2, 4)).read(0)
    _official_files(tmp_path, ids, disparity=np.zeros((2, 4), np.uint16))
    with pytest.raises(EmptyTargetError, match=r"disparity\.png: depth has no valid pixel"):
        CityscapesReader(tmp_path, "train", size=(2, 4)).read(0)
    _official_files(tmp_path, ids, disparity=np.ones((3, 4), np.uint16))
    with pytest.raises(DataError, match=r"differ in size"):
        CityscapesReader(tmp_path, "train", size=(2, 4)).read(0)
    next(tmp_path.glob("gtFine/train/town/*_instanceIds.png")).unlink()
    with pytest.raises(DataError, match=r"instanceIds\.png: missing file"):
        CityscapesReader(tmp_path, "train", size=(2, 4))
    with pytest.raises(ValueError, match=r"depth_encoding: expected one of"):
        CityscapesReader(tmp_path, "train", depth_encoding="metres")


def test_disparity_decoding_follows_cityscapes_scripts(tmp_path: Path) -> None:
    disp = np.array([[0, 1, 257, 2561]], np.uint16)
    _official_files(tmp_path, np.full((1, 4), 7, np.uint16), disparity=disp)
    depth = CityscapesReader(tmp_path, "train", size=(1, 4)).read(0).depth
    np.testing.assert_allclose(depth, [[0.0, 0.0, 1.0, 10.0]])  # (p - 1) / 256, p = 0 invalid
