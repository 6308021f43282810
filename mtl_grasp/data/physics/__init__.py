"""Physically simulated bin-picking scenes (pybullet): the default embedded data. See docs/data.md.

Modules: :mod:`.engine` (the pybullet import, one simulation per scene), :mod:`.camera` (intrinsics,
poses, viewpoints; numpy only), :mod:`.render` (TinyRenderer images; reusable for any pybullet world),
:mod:`.articles` (article kinds, procedural textures), :mod:`.pile` (bin, drop, settle, contacts),
:mod:`.sensor` (depth sensor model), :mod:`.labels` (instance maps, amodal masks, order relations),
:mod:`.scene` (one scene), :mod:`.dataset` (a folder of scenes, parallel), :mod:`.preview` (contact
sheet). pybullet is imported lazily, so importing this package works without it.
"""

from mtl_grasp.data.physics.dataset import GenerationReport, generate_physics_dataset
from mtl_grasp.data.physics.engine import MissingPybullet
from mtl_grasp.data.physics.scene import SceneSettings, simulate_scene

__all__ = [
    "GenerationReport",
    "MissingPybullet",
    "SceneSettings",
    "generate_physics_dataset",
    "simulate_scene",
]
