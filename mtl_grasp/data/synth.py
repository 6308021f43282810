"""Analytic synthetic bin-picking scenes (the fast fixture engine, ``--engine analytic``).

The default embedded data are the physically simulated scenes of :mod:`mtl_grasp.data.physics`; this
2.5-D generator stays as a fast fixture (a scene in ~30 ms, no pybullet) for tests that only need
*some* data in the right layout. The generator lets the whole pipeline (reader, COCO conversion,
training, evaluation, the demo and the tests) run without the real dataset. It writes exactly what
:mod:`mtl_grasp.data.reader` reads from a real ``dataset_sim`` folder::

    OUT/scene<N>/<v>_rgb.png            RGB, 8 bit
    OUT/scene<N>/<v>.npz                depth (float32 cm, NaN holes), instances_objects (visible ids),
                                        instances_semantic (category ids), seg_masks_single ([N,H,W] amodal)
    OUT/scene<N>/<v>_order.json         per object: id, occlusion, parents, children, layer, ...
    OUT/scene<N>/<v>_camera_params.json fx, fy, cx, cy, width, height
    OUT/splits.json                     train/val/test scene lists (mtl_grasp.data.splits)

How a scene is made (all in numpy, per object only on the object's bounding box):

* A bin seen from straight above: a floor ~70 cm from the camera and four sloped walls whose rim is
  ~15 cm nearer. Everything is described in "world" coordinates (fractions of the image width of view
  0) so one layout can be seen from several viewpoints (a similarity transform per view).
* Objects of a catalogue of article types (boxes, lying cylinders, upright discs, ovals, irregular
  polygons) are dropped one after another around 1-3 pile centres. Each rests on the highest surface
  below its footprint (``top = min depth under footprint - thickness``), so later objects lie on top of
  earlier ones: real layers and real occlusion. The object's top surface has a relief smaller than its
  thickness (dome, curved side, tilt), which keeps "later = nearer" true wherever two objects overlap.
* Rendering is a z-buffer over analytic shapes sampled at pixel centres, so depth, the visible instance
  map and the amodal masks are exactly consistent: the visible object at a pixel is the one with the
  smallest depth, and visible is a subset of amodal by construction.
* RGB: bin colour with shaded walls, article colour with texture (stripes, checker, smooth noise,
  rings), shading by relief and height, dark object outlines, global lighting and pixel noise.
* Depth: small Gaussian noise, then NaN holes like a structured-light sensor: shadow bands beside depth
  steps, a few specular blobs and sparse dropouts. Masks are not affected by holes.

Determinism: scene ``i`` of seed ``k`` uses ``numpy.random.default_rng([k, i])`` only, and files are
written with fixed zip timestamps, so the same arguments give byte-identical files (and a scene does not
depend on how many scenes are generated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from mtl_grasp.data import layout
from mtl_grasp.data.splits import DEFAULT_FRACTIONS, make_splits, save_splits
from mtl_grasp.data.writer import ViewData
from mtl_grasp.data.writer import write_view as _write_view

__all__ = [
    "CATALOGUE",
    "ArticleType",
    "RenderedView",
    "SceneLayout",
    "ViewPose",
    "generate_dataset",
    "make_layout",
    "render_scene",
    "render_view",
    "write_view",
]

# ---- the world -----------------------------------------------------------------------------------

FLOOR_DEPTH_CM = (66.0, 74.0)  # camera-to-floor distance; MetaGraspNet bin scenes are ~50-80 cm
WALL_HEIGHT_CM = (12.0, 18.0)
FOCAL_PER_PIXEL = 1.3  # fx = fy = 1.3 * image width -> ~54 cm of floor across the image at 70 cm
BIN_MARGIN = (0.03, 0.06)  # rim width outside the walls, fraction of the image width
WALL_WIDTH = (0.05, 0.08)  # horizontal extent of a sloped wall
DEPTH_NOISE_CM = 0.03
SHADOW_STEP_CM = 1.0  # a depth step larger than this casts a sensor shadow (NaN band)
HIDE_PROBABILITY = 0.05  # chance that an object is dropped right over an earlier one (may hide it)

BIN_COLOURS = (
    (0.22, 0.34, 0.58),  # blue plastic
    (0.50, 0.50, 0.50),  # grey
    (0.17, 0.17, 0.19),  # black
    (0.26, 0.44, 0.31),  # green
    (0.62, 0.56, 0.45),  # cardboard
)


@dataclass(frozen=True)
class ArticleType:
    """One kind of synthetic article; its 1-based position in :data:`CATALOGUE` is its category id."""

    name: str
    shape: str  # "box" | "cylinder" | "disc" | "oval" | "polygon"
    length: tuple[float, float]  # major axis, fraction of the image width
    aspect: tuple[float, float]  # minor / major axis
    thickness_cm: tuple[float, float]
    hue: float  # base hue in [0, 1)
    texture: str  # "plain" | "stripes" | "checker" | "noise" | "rings"


CATALOGUE: tuple[ArticleType, ...] = (
    ArticleType("cereal_box", "box", (0.18, 0.30), (0.45, 0.75), (4.0, 7.0), 0.08, "stripes"),
    ArticleType("tea_box", "box", (0.10, 0.18), (0.50, 0.90), (3.0, 5.0), 0.33, "plain"),
    ArticleType("book", "box", (0.14, 0.24), (0.60, 0.80), (1.5, 3.0), 0.60, "noise"),
    ArticleType("can_lying", "cylinder", (0.12, 0.22), (0.35, 0.55), (4.0, 7.0), 0.00, "stripes"),
    ArticleType("bottle", "cylinder", (0.18, 0.30), (0.22, 0.35), (4.0, 6.0), 0.55, "plain"),
    ArticleType("can_upright", "disc", (0.08, 0.14), (1.00, 1.00), (6.0, 10.0), 0.15, "rings"),
    ArticleType("cup", "disc", (0.10, 0.16), (1.00, 1.00), (5.0, 9.0), 0.85, "plain"),
    ArticleType("fruit", "oval", (0.07, 0.12), (0.75, 1.00), (4.0, 7.0), 0.12, "noise"),
    ArticleType("sponge", "oval", (0.10, 0.16), (0.55, 0.75), (2.0, 4.0), 0.17, "noise"),
    ArticleType("toy", "polygon", (0.08, 0.16), (0.70, 1.00), (3.0, 6.0), 0.70, "checker"),
    ArticleType("bracket", "polygon", (0.12, 0.22), (0.50, 0.80), (1.0, 2.5), 0.45, "plain"),
    ArticleType("tray", "box", (0.25, 0.36), (0.55, 0.80), (1.5, 3.0), 0.95, "checker"),
)


@dataclass
class PlacedObject:
    """An object of a layout in world coordinates (fractions of the view-0 image width)."""

    category_id: int
    shape: str
    center: tuple[float, float]
    angle: float  # rotation of the major axis, radians
    half_len: float
    half_wid: float
    thickness_cm: float
    relief_cm: float  # top-surface relief amplitude, < thickness (keeps later objects nearer)
    tilt: tuple[float, float]
    colour: tuple[float, float, float]
    colour2: tuple[float, float, float]
    texture: str
    texture_freq: float
    texture_amp: float
    texture_waves: np.ndarray  # [3, 3] direction x, direction y, phase of the smooth-noise waves
    poly_angles: np.ndarray | None = None  # polygon vertex angles (sorted, radians) ...
    poly_radii: np.ndarray | None = None  # ... and radii (fractions of the half axes)
    top_cm: float | None = None  # depth of the highest point; set when the pile is built (view 0)

    @property
    def extent(self) -> float:
        """Radius of a world circle containing the object."""
        return math.hypot(self.half_len, self.half_wid)


@dataclass
class SceneLayout:
    """A bin and its pile, independent of the viewpoint."""

    floor_cm: float
    wall_cm: float
    floor_rect: tuple[float, float, float, float]  # x0, y0, x1, y1 of the floor, world coordinates
    wall_width: float
    bin_colour: tuple[float, float, float]
    wall_shades: tuple[float, float, float, float]  # left, right, top, bottom
    floor_waves: np.ndarray
    objects: list[PlacedObject] = field(default_factory=list)


@dataclass
class RenderedView:
    """One rendered viewpoint in MetaGraspNet terms (see the module docstring for the file layout)."""

    rgb: np.ndarray  # uint8 [H, W, 3]
    depth_cm: np.ndarray  # float32 [H, W], NaN = hole
    instances_objects: np.ndarray  # uint16 [H, W], 0 background, object id = index + 1
    instances_semantic: np.ndarray  # uint16 [H, W]
    amodal: np.ndarray  # bool [N, H, W]
    order: dict[str, dict]  # <v>_order.json content
    camera: dict[str, float]  # <v>_camera_params.json content
    # Noise-free per-object depth surfaces (inf outside the object), only with keep_surfaces=True;
    # the tests use them to check that the visible object at every pixel is the nearest one.
    surfaces_cm: np.ndarray | None = None


# ---- layout --------------------------------------------------------------------------------------


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    h = (h % 1.0) * 6.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _random_waves(rng: np.random.Generator, n: int = 3) -> np.ndarray:
    ang = rng.uniform(0, 2 * math.pi, n)
    return np.stack([np.cos(ang), np.sin(ang), rng.uniform(0, 2 * math.pi, n)], axis=1)


def _make_object(rng: np.random.Generator, floor_rect, centres, earlier: list[PlacedObject]) -> PlacedObject:
    art_index = int(rng.integers(len(CATALOGUE)))
    art = CATALOGUE[art_index]
    length = rng.uniform(*art.length)
    aspect = rng.uniform(*art.aspect)
    half_len, half_wid = length / 2, length * aspect / 2
    x0, y0, x1, y1 = floor_rect
    if earlier and rng.random() < HIDE_PROBABILITY:
        # Drop it right over an earlier object, at least as large: produces fully hidden objects
        # (visible area 0) and tiny visible fragments, as real piles have.
        below = earlier[int(rng.integers(len(earlier)))]
        cx, cy = np.asarray(below.center) + rng.normal(0, 0.01, 2)
        grow = max(1.0, 1.2 * below.extent / max(half_wid, 1e-6))
        half_len, half_wid = half_len * grow, half_wid * grow
    else:
        pc = centres[int(rng.integers(len(centres)))]
        cx, cy = np.asarray(pc) + rng.normal(0, 0.12, 2)
    cx = float(np.clip(cx, x0 + 0.03, x1 - 0.03))
    cy = float(np.clip(cy, y0 + 0.03, y1 - 0.03))
    thickness = rng.uniform(*art.thickness_cm)
    curved = art.shape in ("cylinder", "oval")
    relief = thickness * (rng.uniform(0.15, 0.35) if curved else rng.uniform(0.0, 0.12))
    hue = art.hue + rng.uniform(-0.04, 0.04)
    colour = _hsv_to_rgb(hue, rng.uniform(0.5, 0.95), rng.uniform(0.6, 0.95))
    colour2 = _hsv_to_rgb(hue + rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.9), rng.uniform(0.3, 1.0))
    obj = PlacedObject(
        category_id=art_index + 1,
        shape=art.shape,
        center=(cx, cy),
        angle=float(rng.uniform(0, math.pi)),
        half_len=float(half_len),
        half_wid=float(half_wid),
        thickness_cm=float(thickness),
        relief_cm=float(relief),
        tilt=(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5))),
        colour=colour,
        colour2=colour2,
        texture=art.texture,
        texture_freq=float(rng.uniform(2.0, 5.0)),
        texture_amp=float(rng.uniform(0.4, 0.9)),
        texture_waves=_random_waves(rng),
    )
    if art.shape == "polygon":
        k = int(rng.integers(5, 10))
        base = np.linspace(0, 2 * math.pi, k, endpoint=False)
        obj.poly_angles = np.sort((base + rng.uniform(-0.25, 0.25, k) * (2 * math.pi / k)) % (2 * math.pi))
        obj.poly_radii = rng.uniform(0.55, 1.0, k)
    return obj


def make_layout(rng: np.random.Generator) -> SceneLayout:
    """Draw a bin and the objects of its pile (their heights are fixed when view 0 is rendered)."""
    margin = rng.uniform(*BIN_MARGIN)
    wall_w = rng.uniform(*WALL_WIDTH)
    floor_rect = (margin + wall_w, margin + wall_w, 1 - margin - wall_w, 1 - margin - wall_w)
    layout = SceneLayout(
        floor_cm=float(rng.uniform(*FLOOR_DEPTH_CM)),
        wall_cm=float(rng.uniform(*WALL_HEIGHT_CM)),
        floor_rect=floor_rect,
        wall_width=float(wall_w),
        bin_colour=cast(
            tuple[float, float, float],
            tuple(float(c) * rng.uniform(0.85, 1.15) for c in BIN_COLOURS[rng.integers(len(BIN_COLOURS))]),
        ),
        wall_shades=cast(
            tuple[float, float, float, float], tuple(float(s) for s in rng.uniform(0.7, 1.1, 4))
        ),
        floor_waves=_random_waves(rng),
    )
    centres = [tuple(rng.uniform(0.3, 0.7, 2)) for _ in range(int(rng.integers(1, 4)))]
    for _ in range(int(rng.integers(4, 15))):
        layout.objects.append(_make_object(rng, floor_rect, centres, layout.objects))
    return layout


# ---- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewPose:
    """Similarity transform world -> normalised image coordinates: q = s R(phi) (w - 0.5) + 0.5 + t."""

    phi: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    def to_world(self, qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.phi), math.sin(self.phi)
        dx = (qx - 0.5 - self.shift[0]) / self.scale
        dy = (qy - 0.5 - self.shift[1]) / self.scale
        return c * dx + s * dy + 0.5, -s * dx + c * dy + 0.5

    def to_image(self, wx: float, wy: float) -> tuple[float, float]:
        c, s = math.cos(self.phi), math.sin(self.phi)
        dx, dy = wx - 0.5, wy - 0.5
        return (
            self.scale * (c * dx - s * dy) + 0.5 + self.shift[0],
            self.scale * (s * dx + c * dy) + 0.5 + self.shift[1],
        )


def _waves(waves: np.ndarray, x: np.ndarray, y: np.ndarray, freq: float) -> np.ndarray:
    """Smooth pseudo-noise in [0, 1] from a few plane waves (cheap, deterministic, vectorised)."""
    acc = np.zeros(np.broadcast(x, y).shape, np.float32)
    for i, (dx, dy, ph) in enumerate(waves):
        acc += np.sin((dx * x + dy * y) * freq * (i + 1) * 2 * math.pi + ph) / (i + 1)
    return 0.5 + 0.5 * acc / 1.84  # 1.84 = 1 + 1/2 + 1/3, the largest possible |acc|


def _background(layout: SceneLayout, view: ViewPose, size: int) -> tuple[np.ndarray, np.ndarray]:
    q = (np.arange(size, dtype=np.float64) + 0.5) / size
    wx, wy = view.to_world(q[None, :], q[:, None])
    x0, y0, x1, y1 = layout.floor_rect
    # Distance outside the floor along each side; the largest one says which wall a pixel sees.
    sides = np.stack([x0 - wx, wx - x1, y0 - wy, wy - y1])
    dist = np.maximum(sides.max(axis=0), 0.0)
    t = np.clip(dist / layout.wall_width, 0.0, 1.0)
    depth = layout.floor_cm - t * layout.wall_cm
    shade = np.ones_like(depth)
    on_wall = dist > 0
    side = sides.argmax(axis=0)
    shade[on_wall] = np.asarray(layout.wall_shades)[side[on_wall]]
    shade[t >= 1.0] = 1.15  # rim
    shade = shade * (0.9 + 0.2 * _waves(layout.floor_waves, wx, wy, 1.5))
    rgb = np.asarray(layout.bin_colour, np.float32)[None, None, :] * shade[..., None].astype(np.float32)
    return depth, rgb.astype(np.float32)


def _object_patch(obj: PlacedObject, view: ViewPose, size: int):
    """Rasterise one object on its bounding box: slices, membership, surface relief (cm), local coords."""
    cx, cy = view.to_image(*obj.center)
    r = obj.extent * view.scale
    xa, xb = max(int(math.floor((cx - r) * size)), 0), min(int(math.ceil((cx + r) * size)) + 1, size)
    ya, yb = max(int(math.floor((cy - r) * size)), 0), min(int(math.ceil((cy + r) * size)) + 1, size)
    if xa >= xb or ya >= yb:
        return None
    qx = (np.arange(xa, xb, dtype=np.float64) + 0.5) / size
    qy = (np.arange(ya, yb, dtype=np.float64) + 0.5) / size
    wx, wy = view.to_world(qx[None, :], qy[:, None])
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    dx, dy = wx - obj.center[0], wy - obj.center[1]
    un = (c * dx + s * dy) / obj.half_len  # local coordinates normalised by the half axes
    vn = (-s * dx + c * dy) / obj.half_wid
    shape = obj.shape
    if shape in ("box", "cylinder"):
        inside = (np.abs(un) <= 1.0) & (np.abs(vn) <= 1.0)
    elif shape in ("disc", "oval"):
        inside = un * un + vn * vn <= 1.0
    else:  # star-shaped polygon: inside iff left of the edge of the sector that contains the point
        ang = np.arctan2(vn, un) % (2 * math.pi)
        pa, pr = obj.poly_angles, obj.poly_radii
        assert pa is not None and pr is not None, "a polygon article always has its vertices"
        px, py = pr * np.cos(pa), pr * np.sin(pa)
        k = (np.searchsorted(pa, ang, side="right") - 1) % len(pa)
        k2 = (k + 1) % len(pa)
        ex, ey = px[k2] - px[k], py[k2] - py[k]
        inside = ex * (vn - py[k]) - ey * (un - px[k]) >= 0.0
    if not inside.any():
        return None
    if shape == "cylinder":
        relief = obj.relief_cm * vn * vn
    elif shape == "oval":
        relief = obj.relief_cm * np.minimum(un * un + vn * vn, 1.0)
    elif shape == "disc":
        relief = obj.relief_cm * 0.3 * np.minimum(un * un + vn * vn, 1.0)
    else:
        tilt = 0.5 * (1.0 + obj.tilt[0] * np.clip(un, -1, 1) + obj.tilt[1] * np.clip(vn, -1, 1))
        relief = obj.relief_cm * tilt
    return (slice(ya, yb), slice(xa, xb)), inside, relief, un, vn


def _object_colour(obj: PlacedObject, inside: np.ndarray, relief, un, vn, floor_cm: float, top: float):
    if obj.texture == "stripes":
        t = (np.sin(un * obj.texture_freq * math.pi) > 0).astype(np.float32)
    elif obj.texture == "checker":
        f = obj.texture_freq
        t = ((np.floor(un * f) + np.floor(vn * f)) % 2).astype(np.float32)
    elif obj.texture == "noise":
        t = _waves(obj.texture_waves, un, vn, obj.texture_freq / 4)
    elif obj.texture == "rings":
        t = (np.sin(np.sqrt(un * un + vn * vn) * obj.texture_freq * math.pi) > 0).astype(np.float32)
    else:
        t = np.zeros(un.shape, np.float32)
    t = (t * obj.texture_amp)[..., None]
    rgb = np.asarray(obj.colour, np.float32) * (1 - t) + np.asarray(obj.colour2, np.float32) * t
    # Shading: surfaces curving away are darker, objects higher in the pile are brighter, and a dark
    # outline marks the footprint boundary (as real edges do under oblique light).
    height = np.clip((floor_cm - top) / 25.0, 0.0, 1.0)
    shade = (1.0 - 0.45 * relief / max(obj.thickness_cm, 1e-6)) * (0.8 + 0.25 * height)
    inner = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    shade = np.where(inside & (inner == 0), shade * 0.55, shade)
    return rgb * shade[..., None].astype(np.float32)


def _sensor_holes(depth: np.ndarray, ids: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Where a structured-light sensor returns nothing: shadows beside steps, specular spots, dropouts."""
    # Only object boundaries cast shadows (the smooth bin walls are steep per pixel at low resolution).
    step = np.zeros(depth.shape, bool)
    step[:, 1:] = (depth[:, 1:] - depth[:, :-1] > SHADOW_STEP_CM) & (ids[:, 1:] != ids[:, :-1])
    shadow = step.copy()
    for k in range(1, max(1, round(size / 128)) + 1):
        shadow[:, k:] |= step[:, :-k]
    holes = shadow & (rng.random(depth.shape) < 0.8)
    yy, xx = np.ogrid[:size, :size]
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = max(1.0, rng.uniform(0.01, 0.035) * size)
        holes |= (xx - cx) ** 2 + ((yy - cy) * rng.uniform(0.6, 1.6)) ** 2 <= r * r
    holes |= rng.random(depth.shape) < 0.002
    return holes


def render_view(
    layout: SceneLayout,
    size: int,
    rng: np.random.Generator,
    view: ViewPose | None = None,
    keep_surfaces: bool = False,
) -> RenderedView:
    """Render ``layout`` at ``size`` x ``size``. The first call (view 0) also piles the objects up."""
    view = view or ViewPose()
    n = len(layout.objects)
    zbuf, rgb = _background(layout, view, size)
    ids = np.zeros((size, size), np.uint16)
    amodal = np.zeros((n, size, size), bool)
    patches: list[tuple[Any, np.ndarray] | None] = []  # per object: (slices of its box, its surface)
    surfaces = np.full((n, size, size), np.inf, np.float32) if keep_surfaces else None
    for i, obj in enumerate(layout.objects):
        patch = _object_patch(obj, view, size)
        patches.append(None)
        if patch is None:
            continue  # outside this view: empty amodal mask
        sl, inside, relief, un, vn = patch
        if obj.top_cm is None:  # view 0: rest on the highest surface below the footprint
            obj.top_cm = float(zbuf[sl][inside].min() - obj.thickness_cm)
        surface = np.where(inside, obj.top_cm + relief, np.inf)
        closer = surface < zbuf[sl]
        zbuf[sl] = np.where(closer, surface, zbuf[sl])
        ids[sl][closer] = i + 1
        colour = _object_colour(obj, inside, relief, un, vn, layout.floor_cm, obj.top_cm)
        rgb[sl] = np.where(closer[..., None], colour, rgb[sl])
        amodal[i][sl] = inside
        patches[i] = (sl, surface)
        if surfaces is not None:
            surfaces[i][sl] = surface
    order = _occlusion_order(layout, ids, amodal, patches)
    # A nearer camera (scale > 1) sees everything closer by the same amount.
    shift_cm = layout.floor_cm * (1.0 - 1.0 / view.scale)
    depth = (zbuf - shift_cm).astype(np.float32)
    if surfaces is not None:
        surfaces -= np.float32(shift_cm)
    holes = _sensor_holes(depth, ids, rng, size)
    depth = depth + rng.normal(0.0, DEPTH_NOISE_CM, depth.shape).astype(np.float32)
    depth[holes] = np.nan
    light = rng.uniform(0.85, 1.15)
    rgb = np.clip(rgb * light + rng.normal(0.0, 0.012, rgb.shape), 0.0, 1.0)
    semantic_lut = np.array([0] + [o.category_id for o in layout.objects], np.uint16)
    fx = FOCAL_PER_PIXEL * size
    return RenderedView(
        rgb=np.round(rgb * 255).astype(np.uint8),
        depth_cm=depth,
        instances_objects=ids,
        instances_semantic=semantic_lut[ids],
        amodal=amodal,
        order=order,
        camera={"fx": fx, "fy": fx, "cx": size / 2, "cy": size / 2, "width": size, "height": size},
        surfaces_cm=surfaces,
    )


def _occlusion_order(layout: SceneLayout, ids: np.ndarray, amodal: np.ndarray, patches) -> dict[str, dict]:
    """<v>_order.json: occlusion fraction from the masks, and who lies over whom (parents = occluders)."""
    n = len(layout.objects)
    vis_area = np.bincount(ids.ravel(), minlength=n + 1)[1:]
    amodal_area = amodal.reshape(n, -1).sum(axis=1)
    parents: list[list[dict]] = [[] for _ in range(n)]
    children: list[list[dict]] = [[] for _ in range(n)]
    for i in range(n):
        if patches[i] is None:
            continue
        (si_y, si_x), surf_i = patches[i]
        for j in range(i + 1, n):
            if patches[j] is None:
                continue
            (sj_y, sj_x), surf_j = patches[j]
            ya, yb = max(si_y.start, sj_y.start), min(si_y.stop, sj_y.stop)
            xa, xb = max(si_x.start, sj_x.start), min(si_x.stop, sj_x.stop)
            if ya >= yb or xa >= xb:
                continue
            a = surf_i[ya - si_y.start : yb - si_y.start, xa - si_x.start : xb - si_x.start]
            b = surf_j[ya - sj_y.start : yb - sj_y.start, xa - sj_x.start : xb - sj_x.start]
            both = np.isfinite(a) & np.isfinite(b)
            a, b = np.where(both, a, 0.0), np.where(both, b, 0.0)  # avoid inf - inf outside the overlap
            for lo, hi, near, far in ((i, j, b < a, a - b), (j, i, a < b, b - a)):
                cover = both & near
                if cover.any():  # `hi` lies over `lo` somewhere
                    rel = {
                        "id": hi + 1,
                        "depth_diff": round(float(far[cover].mean()), 4),
                        "edge_size": int(cover.sum()),
                    }
                    parents[lo].append(rel)
                    children[hi].append({**rel, "id": lo + 1})
    layers: dict[int, int] = {}

    def layer(k: int, seen: frozenset = frozenset()) -> int:
        if k not in layers:
            ups = [p["id"] - 1 for p in parents[k] if p["id"] - 1 not in seen]
            layers[k] = 0 if not ups else 1 + max(layer(p, seen | {k}) for p in ups)
        return layers[k]

    none = [{"id": 0, "depth_diff": 0.0, "edge_size": 0}]  # MetaGraspNet writes parent id 0 for "none"
    order = {}
    for k in range(n):
        occ = 0.0 if amodal_area[k] == 0 else 1.0 - vis_area[k] / amodal_area[k]
        order[str(k + 1)] = {
            "id": k + 1,
            "category_id": layout.objects[k].category_id,
            "occlusion": round(float(occ), 6),
            "visible_pixels": int(vis_area[k]),
            "amodal_pixels": int(amodal_area[k]),
            "parents": parents[k] or none,
            "children": children[k] or none,
            "total_covered_edge": int(sum(p["edge_size"] for p in parents[k])),
            "layer": layer(k),
        }
    return order


# ---- files ---------------------------------------------------------------------------------------


def write_view(scene_dir: Path, view_index: int, view: RenderedView) -> None:
    """Write one view in MetaGraspNet's simulated layout (see the module docstring)."""
    data = ViewData(
        rgb=view.rgb, depth_cm=view.depth_cm, instances=view.instances_objects,
        semantic=view.instances_semantic, amodal=view.amodal, order=view.order, camera=view.camera,
    )  # fmt: skip
    _write_view(scene_dir, view_index, data)


def _view_params(rng: np.random.Generator, index: int) -> ViewPose:
    if index == 0:
        return ViewPose()
    return ViewPose(
        phi=float(rng.uniform(-0.35, 0.35)),
        scale=float(rng.uniform(0.92, 1.08)),
        shift=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
    )


def render_scene(
    index: int, image_size: int = 256, seed: int = 0, views: int = 1, keep_surfaces: bool = False
) -> list[RenderedView]:
    """Render scene ``index`` of ``seed``: a list of ``views`` :class:`RenderedView` (view 0 first)."""
    rng = np.random.default_rng([seed, index])
    layout = make_layout(rng)
    return [render_view(layout, image_size, rng, _view_params(rng, v), keep_surfaces) for v in range(views)]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    return int(value)


def generate_dataset(
    out_dir: str | Path,
    scenes: int,
    image_size: int = 256,
    seed: int = 0,
    views: int = 1,
    first_scene: int = 0,
    split_fractions: Mapping[str, float] | None = DEFAULT_FRACTIONS,
) -> list[Path]:
    """Write ``scenes`` synthetic scenes ``scene<first_scene>..`` under ``out_dir``; return their folders.

    Each scene has ``views`` viewpoints of the same pile (view 0 straight down, the others rotated,
    shifted and zoomed a little). With ``split_fractions`` (default train/val/test 0.8/0.1/0.1) it also
    writes ``out_dir/splits.json`` over all ``scene*`` folders now in ``out_dir``. Existing files of the
    same scenes are overwritten (the output is deterministic, so that is idempotent).
    """
    scenes = _check_int("scenes", scenes, 1)
    image_size = _check_int("image_size", image_size, 32)
    views = _check_int("views", views, 1)
    first_scene = _check_int("first_scene", first_scene, 0)
    seed = _check_int("seed", seed, 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(first_scene, first_scene + scenes):
        scene_dir = out / layout.scene_dir_name(index)
        for v, rendered in enumerate(render_scene(index, image_size, seed, views)):
            write_view(scene_dir, v, rendered)
        written.append(scene_dir)
    if split_fractions is not None:
        names = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(layout.SCENE_PREFIX))
        save_splits(out / layout.SPLITS_FILE, make_splits(names, split_fractions))
    return written
