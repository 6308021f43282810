"""Scene splits: deterministic, disjoint, covering, proportional; JSON round trip; bad files."""

from __future__ import annotations

import json

import pytest

from mtl_grasp.data import DataError
from mtl_grasp.data.splits import load_splits, make_splits, natural_key, save_splits

SCENES = [f"scene{i}" for i in range(200)]


def test_splits_are_a_deterministic_partition_with_the_asked_sizes():
    a = make_splits(SCENES)
    b = make_splits(list(reversed(SCENES)))  # input order does not matter
    assert a == b
    members = [s for name in a.names for s in a.scenes(name)]
    assert sorted(members) == sorted(SCENES) and len(members) == len(set(members))
    assert [len(a.scenes(n)) for n in ("train", "val", "test")] == [160, 20, 20]
    assert list(a.scenes("val")) == sorted(a.scenes("val"), key=natural_key)
    assert a.split_of(a.scenes("test")[0]) == "test" and a.split_of("nope") is None
    # the assignment looks random, not a block of consecutive scene numbers
    val = [int(s.removeprefix("scene")) for s in a.scenes("val")]
    assert max(val) - min(val) > 100
    # a different salt gives a different split
    assert make_splits(SCENES, salt="other").scenes("val") != a.scenes("val")


def test_every_split_gets_a_scene_when_possible():
    s = make_splits(["a", "b", "c"])
    assert all(len(s.scenes(n)) == 1 for n in ("train", "val", "test"))
    two = make_splits(["a", "b"], {"train": 0.5, "val": 0.5})
    assert sorted(len(v) for v in two.splits.values()) == [1, 1]


def test_json_round_trip(tmp_path):
    s = make_splits(SCENES[:17], {"train": 0.7, "val": 0.3})
    path = save_splits(tmp_path / "s.json", s)
    assert load_splits(path) == s
    assert json.loads(path.read_text())["format"] == "mtl_grasp.splits/1"


@pytest.mark.parametrize(
    "fractions, pattern",
    [({"train": 0.5, "val": 0.4}, "must sum to 1"), ({"train": 1.5}, r"in \[0, 1\]"), ({}, "at least one")],
)
def test_bad_fractions(fractions, pattern):
    with pytest.raises(ValueError, match=f"fractions: .*{pattern}"):
        make_splits(SCENES, fractions)


def test_duplicate_scene_names_are_rejected():
    with pytest.raises(ValueError, match=r"scenes: .*duplicates \['scene1'\]"):
        make_splits(["scene1", "scene2", "scene1"])


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("{oops", "not a readable JSON"),
        ('{"format": "other"}', "expected format 'mtl_grasp.splits/1'"),
        ('{"format": "mtl_grasp.splits/1", "splits": {"a": [1]}}', "must map split names"),
        (
            '{"format": "mtl_grasp.splits/1", "splits": {"a": ["s1"], "b": ["s1"]}}',
            "'s1' is in both 'a' and 'b'",
        ),
    ],
)
def test_bad_split_files(tmp_path, content, pattern):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern) as info:
        load_splits(path)
    assert "bad.json" in str(info.value)
    with pytest.raises(DataError, match="split file not found"):
        load_splits(tmp_path / "missing.json")


def test_unknown_split_lists_known_ones():
    with pytest.raises(DataError, match=r"unknown split 'dev'; known splits are \['test', 'train', 'val'\]"):
        make_splits(SCENES).scenes("dev")
