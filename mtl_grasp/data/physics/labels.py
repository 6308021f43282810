"""Labels of one rendered view, all from the simulation: instance maps, amodal masks, order relations.

* **Visible instance map**: the renderer's per-pixel body id mapped to instance ids ``1..N`` (bin,
  table and empty space -> 0). The visible object at a pixel is the nearest surface by construction
  of the z-buffer.
* **Amodal masks**: object ``k`` rendered alone (every other body hidden) on a small window around its
  projected geometry (a cropped projection: the same pixel grid). Objects that cannot be occluded skip
  the render: if no pixel inside the projected convex hull of ``k``'s enclosing points (it contains
  ``k``'s silhouette; OpenCV fills every pixel the hull touches) shows another body nearer than ``k``'s
  farthest point (by more than ``CONTACT_DEPTH_M``: what touches the far side is what ``k`` rests on),
  nothing covers ``k`` and its amodal mask is its visible mask. In dense piles almost every object has
  a neighbour inside that hull, so the rule saves only ~5 % of the renders there (measured by
  ``python -m training bench synth``); the windows are the large saving. ``amodal |=
  visible`` absorbs rasterisation ties on edges (a few pixels at most; counted in ``edge_fixes``).
* **order.json**: ``occlusion = 1 - |visible| / |amodal|``; ``parents`` = objects seen inside this
  object's amodal mask (its occluders) with ``edge_size`` = those pixels and ``depth_diff`` = mean depth
  gap (cm); ``children`` the reverse; ``layer`` 0 = unoccluded; and ``rests_on`` / ``supports`` from the
  simulator's contact points (:func:`mtl_grasp.data.physics.pile.rests_on`; id 0 = the bin).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mtl_grasp.data.physics.camera import Intrinsics, project_points
from mtl_grasp.data.physics.engine import pybullet
from mtl_grasp.data.physics.pile import Pile, geometry_points
from mtl_grasp.data.physics.render import render

__all__ = ["AmodalResult", "amodal_masks", "instance_map", "order_json", "object_windows"]

CONTACT_DEPTH_M = 0.003  # what lies this close to an object's farthest point is what it rests on, not a cover
NONE = [{"id": 0, "depth_diff": 0.0, "edge_size": 0}]  # MetaGraspNet writes parent id 0 for "none"


@dataclass
class AmodalResult:
    """Amodal masks ``[N, H, W]`` bool; per rendered object its window and noise-free depth patch (m, inf
    outside the object); how many solo renders ran and how many edge pixels ``amodal |= visible`` added."""

    masks: np.ndarray
    patches: dict[int, tuple[tuple[int, int, int, int], np.ndarray]]
    renders: int
    edge_fixes: int


def instance_map(body_ids: np.ndarray, pile: Pile) -> np.ndarray:
    """uint16 [H, W]: item index + 1 where an item is the nearest surface, else 0."""
    lut = np.zeros(int(max(body_ids.max(), max(it.body for it in pile.items))) + 2, np.uint16)
    for k, it in enumerate(pile.items):
        lut[it.body + 1] = k + 1
    return lut[body_ids + 1]


def object_windows(pile: Pile, intr: Intrinsics, pose: np.ndarray) -> list[tuple | None]:
    """Per item ``(x0, y0, x1, y1, z_far, hull)``: the pixel window around its projected geometry (None
    when it is outside the image), the depth (m) of its farthest point and, inside the window, a bool
    mask that contains its silhouette (every pixel touched by the projected convex hull of its enclosing
    points; None when a point is behind the camera)."""
    out: list[tuple | None] = []
    for it in pile.items:
        uvz = project_points(geometry_points(pile.client, it, enclosing=True), intr, pose)
        z_far = float(uvz[:, 2].max())
        if (uvz[:, 2] <= 1e-3).any():  # a point behind the camera: the whole image, no hull
            out.append((0, 0, intr.width, intr.height, z_far, None))
            continue
        x0, y0 = np.floor(uvz[:, :2].min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(uvz[:, :2].max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, intr.width), min(y1, intr.height)
        if x0 >= x1 or y0 >= y1:
            out.append(None)
            continue
        hull = cv2.convexHull(np.round((uvz[:, :2] - [x0, y0]) * 16).astype(np.int32))
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
        out.append((int(x0), int(y0), int(x1), int(y1), z_far, mask > 0))
    return out


class _Solo:
    """Hide every body but one (alpha 0 makes TinyRenderer skip a shape); restores colours on exit."""

    def __init__(self, pile: Pile):
        pb = pybullet()
        self.client = pile.client
        self.shapes = []  # (body, shape index, rgba)
        for body in [*pile.bin_bodies, *(it.body for it in pile.items)]:
            for i, data in enumerate(pb.getVisualShapeData(body, physicsClientId=self.client)):
                self.shapes.append((body, i, tuple(data[7])))

    def _set(self, body: int | None, visible: bool) -> None:
        pb = pybullet()
        for b, i, rgba in self.shapes:
            if body is None or b == body:
                colour = rgba if visible else (*rgba[:3], 0.0)
                pb.changeVisualShape(b, -1, shapeIndex=i, rgbaColor=colour, physicsClientId=self.client)

    def __enter__(self):
        self._set(None, False)
        return self

    def show(self, body: int, visible: bool) -> None:
        self._set(body, visible)

    def __exit__(self, *exc) -> None:
        self._set(None, True)


def amodal_masks(
    pile: Pile, intr: Intrinsics, pose: np.ndarray, instances: np.ndarray, z_true: np.ndarray,
    force_all: bool = False, windows: bool = True,
) -> AmodalResult:  # fmt: skip
    """Amodal masks of every item (see the module docstring); ``force_all`` renders every object alone
    (the tests use it to check the skip rule and to get every object's noise-free surface);
    ``windows=False`` renders the whole image each time (slower, same masks; for the benchmark)."""
    n = len(pile.items)
    masks = instances[None, :, :] == np.arange(1, n + 1, dtype=np.uint16)[:, None, None]
    patches: dict[int, tuple] = {}
    todo = []
    for k, win in enumerate(object_windows(pile, intr, pose)):
        if win is None:
            continue
        x0, y0, x1, y1, z_far, hull = win
        block = (instances[y0:y1, x0:x1] != k + 1) & (z_true[y0:y1, x0:x1] < z_far - CONTACT_DEPTH_M)
        if hull is not None:
            block &= hull
        if force_all or block.any():
            todo.append((k, (x0, y0, x1, y1) if windows else (0, 0, intr.width, intr.height)))
    fixes = 0
    if todo:
        with _Solo(pile) as solo:
            for k, (x0, y0, x1, y1) in todo:
                body = pile.items[k].body
                solo.show(body, True)
                img = render(pile.client, intr, pose, window=(x0, y0, x1, y1), light=None, rgb=False)
                solo.show(body, False)
                mine = img.body_ids == body
                fixes += int((masks[k, y0:y1, x0:x1] & ~mine).sum())
                masks[k, y0:y1, x0:x1] |= mine
                patches[k] = ((x0, y0, x1, y1), np.where(mine, img.depth_m, np.inf).astype(np.float32))
    return AmodalResult(masks, patches, len(todo), fixes)


def _layers(parents: list[list[dict]]) -> list[int]:
    layers: dict[int, int] = {}

    def layer(k: int, seen: frozenset = frozenset()) -> int:
        if k not in layers:
            ups = [p["id"] - 1 for p in parents[k] if p["id"] - 1 not in seen]
            layers[k] = 0 if not ups else 1 + max(layer(p, seen | {k}) for p in ups)
        return layers[k]

    return [layer(k) for k in range(len(parents))]


def _occluders(amodal: AmodalResult, instances: np.ndarray, z_true: np.ndarray) -> list[list[dict]]:
    """Per object: the objects visible inside its amodal mask, with overlap pixels and depth gap (cm)."""
    parents: list[list[dict]] = [[] for _ in range(len(amodal.masks))]
    for k, ((x0, y0, x1, y1), solo_z) in sorted(amodal.patches.items()):
        ids = instances[y0:y1, x0:x1]
        inside = np.isfinite(solo_z)
        for j in np.unique(ids[inside]):
            if j == 0 or j == k + 1:
                continue
            cover = inside & (ids == j)
            gap = 100.0 * float(np.mean(solo_z[cover] - z_true[y0:y1, x0:x1][cover]))
            parents[k].append({"id": int(j), "depth_diff": round(gap, 4), "edge_size": int(cover.sum())})
    return parents


def order_json(
    pile: Pile,
    amodal: AmodalResult,
    instances: np.ndarray,
    z_true: np.ndarray,
    support: dict[int, list[dict]],
    names: dict[int, str],
) -> dict[str, dict]:
    """``<v>_order.json``: per object id (string) the occlusion fraction and both relations."""
    n = len(pile.items)
    vis = np.bincount(instances.ravel(), minlength=n + 1)[1 : n + 1]
    area = amodal.masks.reshape(n, -1).sum(axis=1)
    parents = _occluders(amodal, instances, z_true)
    children: list[list[dict]] = [[] for _ in range(n)]
    supports: list[list[dict]] = [[] for _ in range(n)]
    for k in range(n):
        for p in parents[k]:
            children[p["id"] - 1].append({**p, "id": k + 1})
        for s in support[k]:
            if s["index"] >= 0:
                supports[s["index"]].append({"id": k + 1, "points": s["points"]})
    layers = _layers(parents)
    order = {}
    for k, it in enumerate(pile.items):
        order[str(k + 1)] = {
            "id": k + 1, "category_id": it.category_id, "category": names[it.category_id],
            "occlusion": round(float(1.0 - vis[k] / area[k]), 6) if area[k] else 0.0,
            "visible_pixels": int(vis[k]), "amodal_pixels": int(area[k]),
            "parents": parents[k] or NONE, "children": children[k] or NONE,
            "total_covered_edge": int(sum(p["edge_size"] for p in parents[k])), "layer": layers[k],
            "rests_on": [{"id": s["index"] + 1, "points": s["points"], "normal_z": round(s["normal_z"], 4),
                          "force": round(s["force"], 5)} for s in support[k]],
            "supports": supports[k],
        }  # fmt: skip
    return order
