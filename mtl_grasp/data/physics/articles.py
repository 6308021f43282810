"""The article kinds of the simulated bins and their procedural textures.

One category id per kind (1-based position in :data:`ARTICLES`), written to ``OUT/categories.json``.
Two sources: procedural primitives (boxes, cylinders, spheres, capsules) in warehouse sizes with
procedural textures — boxes get packaging artwork (colour panels, a logo, text lines, a barcode) so
they look like packaged goods — and meshes that ship with pybullet in ``pybullet_data`` (duck, teddy,
lego brick, jenga block, soccer ball, mug, and the ~1000 procedurally made "random_urdfs" blobs),
scaled to warehouse sizes. Sizes are metres (the article's largest extent is 2-25 cm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["ARTICLES", "Article", "category_names", "draw_article", "paint_texture", "random_colour"]


@dataclass(frozen=True)
class Article:
    """One kind of article. ``size`` ranges are metres: box (x, y, z) extents; cylinder/capsule
    (radius, length); sphere (radius,); mesh (largest extent,). ``texture``: "package", "label",
    "speckle", "plain" (a random colour) or "own" (the mesh's own texture); ``mesh``: a URDF under
    pybullet_data (``{k:03d}`` is a random_urdfs index)."""

    name: str
    shape: str  # box | cylinder | sphere | capsule | mesh
    size: tuple[tuple[float, float], ...]
    texture: str
    mesh: str | None = None
    mass: float = 0.3  # kg


ARTICLES: tuple[Article, ...] = (
    Article("cereal_box", "box", ((0.16, 0.25), (0.11, 0.18), (0.04, 0.07)), "package", mass=0.5),
    Article("tea_box", "box", ((0.09, 0.15), (0.06, 0.09), (0.04, 0.07)), "package", mass=0.2),
    Article("medicine_box", "box", ((0.05, 0.10), (0.03, 0.06), (0.02, 0.04)), "package", mass=0.05),
    Article("parcel", "box", ((0.14, 0.24), (0.10, 0.17), (0.015, 0.04)), "label", mass=0.4),
    Article("can", "cylinder", ((0.03, 0.045), (0.07, 0.13)), "label", mass=0.35),
    Article("bottle", "cylinder", ((0.025, 0.04), (0.14, 0.23)), "label", mass=0.5),
    Article("ball", "sphere", ((0.03, 0.06),), "speckle", mass=0.2),
    Article("fruit", "sphere", ((0.02, 0.04),), "speckle", mass=0.15),
    Article("tube", "capsule", ((0.012, 0.025), (0.05, 0.14)), "label", mass=0.1),
    Article("duck", "mesh", ((0.07, 0.13),), "plain", mesh="duck_vhacd.urdf", mass=0.1),
    Article("teddy", "mesh", ((0.10, 0.18),), "plain", mesh="teddy_vhacd.urdf", mass=0.15),
    Article("brick", "mesh", ((0.04, 0.08),), "plain", mesh="lego/lego.urdf", mass=0.05),
    Article("block", "mesh", ((0.08, 0.15),), "own", mesh="jenga/jenga.urdf", mass=0.1),
    Article("soccer_ball", "mesh", ((0.06, 0.11),), "own", mesh="soccerball.urdf", mass=0.2),
    Article("mug", "mesh", ((0.09, 0.13),), "plain", mesh="objects/mug.urdf", mass=0.3),
    Article("irregular", "mesh", ((0.05, 0.12),), "plain", mesh="random_urdfs/{k:03d}/{k:03d}.urdf"),
)
RANDOM_URDF_COUNT = 1000


def category_names() -> dict[int, str]:
    """Category id -> article name, as written to ``categories.json``."""
    return {i + 1: a.name for i, a in enumerate(ARTICLES)}


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    rgb = cv2.cvtColor(np.array([[[h % 1.0 * 360, s, v]]], np.float32), cv2.COLOR_HSV2RGB)[0, 0]
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def random_colour(rng: np.random.Generator, saturation=(0.45, 0.95), value=(0.35, 0.95)) -> tuple:
    """A random RGB colour in [0, 1]."""
    return _hsv(rng.random(), rng.uniform(*saturation), rng.uniform(*value))


def _barcode(img: np.ndarray, rng: np.random.Generator, x0: int, y0: int, w: int, h: int) -> None:
    img[y0 : y0 + h, x0 : x0 + w] = 1.0
    x = x0 + 2
    while x < x0 + w - 3:
        bar = int(rng.integers(1, 3))
        img[y0 + 2 : y0 + h - 2, x : x + bar] = 0.0
        x += bar + int(rng.integers(1, 3))


def _package(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """Packaging artwork: a second-colour panel, a logo disc, text lines, sometimes a barcode."""
    accent = np.asarray(random_colour(rng))
    cut = int(rng.uniform(0.25, 0.7) * size)
    if rng.random() < 0.5:
        img[cut:] = accent
    else:
        img[:, cut:] = accent
    centre = (int(rng.uniform(0.25, 0.75) * size), int(rng.uniform(0.25, 0.75) * size))
    radius = int(rng.uniform(0.08, 0.22) * size)
    logo = tuple(float(c) for c in random_colour(rng, value=(0.6, 1.0)))
    cv2.circle(img, centre, radius, logo, -1, lineType=cv2.LINE_AA)
    cv2.circle(img, centre, max(1, radius // 2), tuple(float(c) for c in accent), -1, lineType=cv2.LINE_AA)
    ink = (0.05, 0.05, 0.05) if rng.random() < 0.6 else (0.97, 0.97, 0.97)
    y = int(rng.uniform(0.05, 0.2) * size)
    for _ in range(int(rng.integers(2, 6))):
        x0 = int(rng.uniform(0.05, 0.3) * size)
        cv2.rectangle(img, (x0, y), (x0 + int(rng.uniform(0.2, 0.6) * size), y + max(1, size // 40)), ink, -1)
        y += int(rng.uniform(0.05, 0.1) * size)
    if rng.random() < 0.6:
        _barcode(img, rng, int(0.6 * size), int(0.75 * size), int(0.3 * size), int(0.18 * size))


def paint_texture(rng: np.random.Generator, style: str, base: tuple, size: int = 128) -> np.ndarray:
    """A procedural texture, uint8 RGB [size, size, 3]: ``package``, ``label`` (band + text on a plain
    body, for cans, bottles, parcels), ``speckle`` (fruit/ball skin) or ``plain`` (fine noise)."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = np.asarray(base, np.float32)
    if style == "package":
        _package(img, rng, size)
    elif style == "label":
        band = np.asarray(random_colour(rng, value=(0.7, 1.0)), np.float32)
        a, b = sorted(rng.uniform(0.2, 0.8, 2) * size)
        img[int(a) : int(b) + 2] = band
        for k in range(int(rng.integers(1, 4))):
            y = int(a) + 3 + 4 * k
            if y < b:
                img[y : y + 1, int(0.1 * size) : int(rng.uniform(0.3, 0.9) * size)] = 0.1
    elif style == "speckle":
        dots = rng.random((size, size)) < 0.04
        img[dots] *= 0.7
    noise = rng.normal(0.0, 0.025, (size, size, 1)).astype(np.float32)
    img = np.clip(cv2.GaussianBlur(img, (3, 3), 0) + noise, 0.0, 1.0)
    return np.round(img * 255).astype(np.uint8)


def draw_article(rng: np.random.Generator) -> tuple[int, dict]:
    """Draw an article kind and its dimensions: ``(category_id, spec)`` where ``spec`` has ``shape``,
    ``dims`` (metres, see :class:`Article`), ``mesh`` (resolved URDF path or None), ``texture``,
    ``colour``, ``mass``."""
    k = int(rng.integers(len(ARTICLES)))
    art = ARTICLES[k]
    dims = [float(rng.uniform(lo, hi)) for lo, hi in art.size]
    if art.shape == "box":
        dims = sorted(dims, reverse=True)  # x >= y >= z: the texture's long side on the long face
    mesh = art.mesh.format(k=int(rng.integers(RANDOM_URDF_COUNT))) if art.mesh else None
    colour = None if art.texture == "own" else random_colour(rng)
    return k + 1, {
        "shape": art.shape, "dims": dims, "mesh": mesh, "texture": art.texture, "colour": colour,
        "mass": art.mass * (1.0 + 0.2 * math.tanh(rng.normal())),
    }  # fmt: skip
