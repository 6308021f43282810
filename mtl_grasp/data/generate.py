"""One entry point for both scene engines: ``generate(out_dir, scenes, engine="physics", ...)``.

* ``physics`` (default): pybullet piles, :mod:`mtl_grasp.data.physics` (the ``data`` extra).
* ``analytic``: the 2.5-D fast fixture, :mod:`mtl_grasp.data.synth` (numpy only; 4-14 objects, straight
  down view 0; ``objects`` and ``workers`` do not apply to it).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ENGINES", "generate"]

ENGINES = ("physics", "analytic")


def generate(
    out_dir: str | Path,
    scenes: int,
    engine: str = "physics",
    image_size: int = 256,
    seed: int = 0,
    views: int = 1,
    first_scene: int = 0,
    objects: tuple[int, int] | None = None,
    workers: int | None = None,
    progress: bool = False,
):
    """Write ``scenes`` scenes with ``engine``; returns the physics engine's
    :class:`~mtl_grasp.data.physics.GenerationReport` or the analytic engine's list of scene folders."""
    if engine == "physics":
        from mtl_grasp.data.physics import generate_physics_dataset

        return generate_physics_dataset(
            out_dir, scenes, image_size=image_size, seed=seed, views=views, first_scene=first_scene,
            objects=objects or (5, 40), workers=workers, progress=progress,
        )  # fmt: skip
    if engine == "analytic":
        if objects is not None:
            raise ValueError(
                f"objects: the analytic engine draws 4-14 objects per scene; {objects} needs engine 'physics'"
            )
        from mtl_grasp.data.synth import generate_dataset

        return generate_dataset(
            out_dir, scenes, image_size=image_size, seed=seed, views=views, first_scene=first_scene
        )
    raise ValueError(f"engine: unknown scene engine {engine!r}; expected one of {list(ENGINES)}")
