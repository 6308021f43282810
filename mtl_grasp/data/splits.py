"""Train/val/test splits by scene: deterministic, never a scene in two splits, stored as JSON.

A split is decided per *scene* (all viewpoints of a scene share objects and the pile, so splitting by
view would leak). Scenes are ordered by a salted SHA-256 of their name (stable across machines and
Python versions, unlike ``hash()``), and consecutive chunks of that order form the splits, sized by
the fractions with largest-remainder rounding (every split gets at least one scene when there are
enough scenes). The order depends only on the names, but the chunk boundaries depend on how many
scenes there are: so a split file, once written, is the reference and is kept and reused (the
generator writes ``splits.json`` next to its scenes; for the real dataset write one with
``python -m training coco --root DIR --make-splits FILE`` and keep it in the repository).

File format (``format`` = ``mtl_grasp.splits/1``)::

    {"format": "mtl_grasp.splits/1", "salt": "mtl_grasp", "fractions": {"train": 0.8, ...},
     "splits": {"train": ["scene0", ...], "val": [...], "test": [...]}}

Scene names are the scene folder paths relative to the dataset root, with ``/`` separators
(``scene12`` or ``level_5/scene46``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mtl_grasp.data.errors import DataError

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLITS_FORMAT",
    "Splits",
    "load_splits",
    "make_splits",
    "natural_key",
    "save_splits",
]

SPLITS_FORMAT = "mtl_grasp.splits/1"
DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
DEFAULT_SALT = "mtl_grasp"


def natural_key(text: str) -> tuple:
    """Sort key that orders ``scene2`` before ``scene10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class Splits:
    """Named, disjoint lists of scene names."""

    splits: Mapping[str, tuple[str, ...]]
    fractions: Mapping[str, float]
    salt: str = DEFAULT_SALT

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.splits)

    def scenes(self, split: str) -> tuple[str, ...]:
        """The scenes of ``split``; an unknown name raises :class:`DataError` listing the known ones."""
        if split not in self.splits:
            raise DataError(f"split: unknown split {split!r}; known splits are {sorted(self.splits)}")
        return self.splits[split]

    def split_of(self, scene: str) -> str | None:
        """The split that holds ``scene``, or None."""
        for name, members in self.splits.items():
            if scene in members:
                return name
        return None

    def to_json(self) -> dict:
        return {
            "format": SPLITS_FORMAT,
            "salt": self.salt,
            "fractions": dict(self.fractions),
            "splits": {k: list(v) for k, v in self.splits.items()},
        }


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    if not fractions:
        raise ValueError("fractions: expected at least one split name -> fraction, found none")
    out = {}
    for name, f in fractions.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"fractions: split names must be non-empty strings, found {name!r}")
        if not isinstance(f, (int, float)) or not 0 <= f <= 1 or math.isnan(f):
            raise ValueError(f"fractions: fraction of {name!r} must be in [0, 1], found {f!r}")
        out[name] = float(f)
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"fractions: must sum to 1, found {total} for {out}")
    return out


def _scene_hash(name: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}/{name}".encode()).digest()[:8], "big")


def _counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    exact = {k: f * n for k, f in fractions.items()}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    # Largest remainder first; ties broken by the order the splits were given in.
    rest = sorted(fractions, key=lambda k: -(exact[k] - counts[k]))
    for k in rest[: n - sum(counts.values())]:
        counts[k] += 1
    # A split asked for (fraction > 0) gets at least one scene when there are enough scenes.
    wanted = [k for k, f in fractions.items() if f > 0]
    if n >= len(wanted):
        for k in wanted:
            if counts[k] == 0:
                donor = max(counts, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[k] += 1
    return counts


def make_splits(
    scenes: Iterable[str], fractions: Mapping[str, float] = DEFAULT_FRACTIONS, salt: str = DEFAULT_SALT
) -> Splits:
    """Split scene names into disjoint named splits (see the module docstring for the rule)."""
    names = list(scenes)
    fr = _check_fractions(fractions)
    bad = [s for s in names if not isinstance(s, str) or not s]
    if bad:
        raise ValueError(f"scenes: expected non-empty scene names, found {bad[:3]!r}")
    dupes = sorted({s for s in names if names.count(s) > 1}) if len(set(names)) != len(names) else []
    if dupes:
        raise ValueError(f"scenes: each scene must appear once, found duplicates {dupes[:5]}")
    ordered = sorted(names, key=lambda s: (_scene_hash(s, salt), s))
    counts = _counts(len(ordered), fr)
    out, start = {}, 0
    for k in fr:
        out[k] = tuple(sorted(ordered[start : start + counts[k]], key=natural_key))
        start += counts[k]
    return Splits(splits=out, fractions=fr, salt=salt)


def save_splits(path: str | Path, splits: Splits) -> Path:
    """Write ``splits`` as JSON (stable formatting, so the file diffs cleanly in the repository)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits.to_json(), indent=1, sort_keys=False) + "\n")
    return path


def load_splits(path: str | Path) -> Splits:
    """Read a split file; a missing, malformed or overlapping file raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON split file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != SPLITS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected format {SPLITS_FORMAT!r}, found {found!r}")
    raw = data.get("splits")
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in raw.values()
    ):
        raise DataError(f"{path}: 'splits' must map split names to lists of scene names")
    seen: dict[str, str] = {}
    for name, members in raw.items():
        for scene in members:
            if scene in seen:
                raise DataError(f"{path}: scene {scene!r} is in both {seen[scene]!r} and {name!r}")
            seen[scene] = name
    return Splits(
        splits={k: tuple(v) for k, v in raw.items()},
        fractions=dict(data.get("fractions") or {}),
        salt=str(data.get("salt", DEFAULT_SALT)),
    )
