"""Write a folder of physically simulated scenes in MetaGraspNet's simulated layout, in parallel.

Scene ``i`` is :func:`mtl_grasp.data.physics.scene.simulate_scene` ``(i, seed)`` written by
:func:`mtl_grasp.data.writer.write_view`; worker processes each make whole scenes, so the files are
byte-identical for any ``workers`` (and for any ``scenes`` / ``first_scene`` around a given scene).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mtl_grasp.data import layout
from mtl_grasp.data.physics.articles import category_names
from mtl_grasp.data.physics.engine import pybullet
from mtl_grasp.data.physics.scene import SceneSettings, simulate_scene
from mtl_grasp.data.splits import DEFAULT_FRACTIONS, make_splits, save_splits
from mtl_grasp.data.writer import write_json, write_view

__all__ = ["GenerationReport", "default_workers", "generate_physics_dataset"]

log = logging.getLogger("mtl_grasp.data.physics")
STAGES = ("settle", "render", "amodal", "labels", "write")


@dataclass
class GenerationReport:
    """What was written and where the time went (seconds summed over scenes, per stage of
    :data:`STAGES`), the regenerated piles' reasons, and counts."""

    scene_dirs: list[Path]
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    reasons: list[str] = field(default_factory=list)
    objects: int = 0
    removed: int = 0
    amodal_renders: int = 0
    workers: int = 1
    elapsed_s: float = 0.0


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _make_scene(task: tuple[int, int, SceneSettings, str]) -> dict:
    index, seed, settings, out = task
    scene = simulate_scene(index, seed, settings)
    t0 = time.perf_counter()
    scene_dir = Path(out) / layout.scene_dir_name(index)
    for v, view in enumerate(scene.views):
        write_view(scene_dir, v, view)
    timings = {**scene.timings, "write": time.perf_counter() - t0}
    return {
        "dir": scene_dir, "timings": timings, "reasons": scene.reasons, "removed": scene.removed,
        "objects": len(scene.views[0].order), "renders": sum(v.renders for v in scene.views),
    }  # fmt: skip


def _add(report: GenerationReport, r: dict) -> None:
    report.scene_dirs.append(r["dir"])
    for k, v in r["timings"].items():
        report.timings[k] += v
    if report.workers > 1:  # quiet workers: the parent logs (one worker logged it in this process)
        for reason in r["reasons"]:
            log.warning(reason)
    report.reasons += r["reasons"]
    report.objects += r["objects"]
    report.removed += r["removed"]
    report.amodal_renders += r["renders"]


def _quiet_worker() -> None:
    logging.getLogger("mtl_grasp.data.physics").setLevel(logging.ERROR)  # the parent logs the reasons


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    return value


def _results(tasks: list, workers: int, progress: bool):
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="scenes", unit="scene", disable=not progress)
    if workers == 1:
        for task in tasks:
            yield _make_scene(task)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # no state (threads, pybullet) leaks from the parent
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet_worker) as pool:
            for result in pool.map(_make_scene, tasks, chunksize=1):
                yield result
                bar.update()
    bar.close()


def generate_physics_dataset(
    out_dir: str | Path,
    scenes: int,
    image_size: int = 256,
    seed: int = 0,
    views: int = 1,
    first_scene: int = 0,
    objects: tuple[int, int] = (5, 40),
    workers: int | None = None,
    split_fractions: Mapping[str, float] | None = DEFAULT_FRACTIONS,
    progress: bool = False,
    settings: SceneSettings | None = None,
) -> GenerationReport:
    """Write scenes ``first_scene .. first_scene + scenes - 1`` under ``out_dir``.

    ``objects`` is the inclusive range of articles dropped per scene; ``workers`` processes (default:
    the cores; 1 = in this process). Also writes ``categories.json`` and, with ``split_fractions``,
    ``splits.json`` over every ``scene*`` folder in ``out_dir``. ``settings`` overrides the scene
    settings (image_size/views/objects then come from it). Impossible arguments raise ValueError naming
    the argument; pybullet missing raises :class:`~mtl_grasp.data.physics.engine.MissingPybullet`.
    """
    _check_int("scenes", scenes, 1)
    _check_int("seed", seed, 0)
    _check_int("first_scene", first_scene, 0)
    workers = default_workers() if workers is None else _check_int("workers", workers, 1)
    lo, hi = objects
    settings = (settings or SceneSettings(image_size=image_size, views=views, objects=(lo, hi))).check()
    pybullet()  # fail here, with the install hint, rather than in every worker
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks = [(i, seed, settings, str(out)) for i in range(first_scene, first_scene + scenes)]
    report = GenerationReport([], workers=min(workers, scenes))
    for r in _results(tasks, report.workers, progress):
        _add(report, r)
    write_json(out / layout.CATEGORIES_FILE, {str(k): v for k, v in category_names().items()})
    if split_fractions is not None:
        names = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(layout.SCENE_PREFIX))
        save_splits(out / layout.SPLITS_FILE, make_splits(names, split_fractions))
    report.elapsed_s = time.perf_counter() - start
    return report
