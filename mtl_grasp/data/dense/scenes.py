"""Random scene layouts for the dense stand-ins: NYU-like rooms and CityScapes-like streets of primitives.

A layout is a camera plus a list of :mod:`~mtl_grasp.data.dense.raycast` primitives whose ``label``
is the dataset's own label id: NYU-v2's 13-class index for rooms, the CityScapes *label id*
(``labels.py``: road 7, car 26, ...) for streets, with instance ids encoded as CityScapes does
(``label_id * 1000 + k``; a crowd region carries its bare label id). Each function draws from the
``rng`` it is given only, so a layout is a pure function of the generator's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtl_grasp.data.dense.raycast import (
    Box,
    Cylinder,
    GroundPlane,
    PinholeCamera,
    Primitive,
    RoomShell,
    Sphere,
)

# NYU-v2 13-class indices (mtl_grasp.data.dense.layout.NYU13_CLASSES)
BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WALL, WINDOW = range(13)
# CityScapes label ids (cityscapesScripts labels.py)
EGO, ROAD, SIDEWALK, BUILDING, FENCE, POLE, LIGHT, SIGN = 1, 7, 8, 11, 13, 17, 19, 20
VEGETATION, TERRAIN, SKY, PERSON, CAR, TRUCK = 21, 22, 23, 24, 26, 27

KINECT_FX_PER_WIDTH = 518.8 / 640  # NYU-v2 Kinect focal length over image width
CITYSCAPES_FX_PER_WIDTH = 2262.5 / 2048  # CityScapes camera focal length over image width
CITYSCAPES_BASELINE_M = 0.22  # stereo baseline (about 22 cm; csCalibration)


@dataclass
class Layout:
    """A camera and the primitives in front of it."""

    camera: PinholeCamera
    primitives: list[Primitive]


def _colour(rng: np.random.Generator, base: tuple[float, float, float], spread: float = 0.08):
    return tuple(float(c) for c in np.clip(np.asarray(base) + rng.uniform(-spread, spread, 3), 0.02, 0.98))


def _camera(width: int, height: int, fx_per_width: float, **pose) -> PinholeCamera:
    f = fx_per_width * width
    return PinholeCamera(width, height, f, f, width / 2.0, height / 2.0, **pose)


def _room_shell(rng: np.random.Generator, size: tuple[float, float, float]) -> RoomShell:
    w, h, d = size
    wall = _colour(rng, (0.78, 0.74, 0.66), 0.12)
    faces = [
        (WALL, wall, "noise"),
        (WALL, wall, "noise"),
        (FLOOR, _colour(rng, (0.55, 0.38, 0.24), 0.12), str(rng.choice(["checker", "stripes"]))),
        (CEILING, _colour(rng, (0.92, 0.92, 0.9), 0.04), "plain"),
        (WALL, wall, "noise"),
        (WALL, _colour(rng, wall, 0.06), "noise"),
    ]
    return RoomShell(lo=(-w / 2, 0.0, 0.0), hi=(w / 2, h, d), faces=faces)


def _random_colour(rng: np.random.Generator, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float, float]:
    return _colour(rng, tuple(rng.uniform(lo, hi, 3)), 0.0)


def _table(rng: np.random.Generator, x: float, z: float) -> list[Primitive]:
    """A table top on four legs, with books and objects on it."""
    hx, hz, top = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.45), rng.uniform(0.68, 0.78)
    colour = _colour(rng, (0.45, 0.3, 0.18))
    top_box = Box((x, top, z), (hx, 0.025, hz), label=TABLE, colour=colour, texture="stripes")
    parts: list[Primitive] = [top_box]
    for sx, sz in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        leg = (x + sx * (hx - 0.05), 0.0, z + sz * (hz - 0.05))
        parts.append(Cylinder(leg, 0.03, top - 0.025, label=TABLE, colour=colour))
    for _ in range(int(rng.integers(0, 4))):
        bx, bz = x + rng.uniform(-hx + 0.1, hx - 0.1), z + rng.uniform(-hz + 0.1, hz - 0.1)
        if rng.random() < 0.5:
            hh = rng.uniform(0.02, 0.06)
            book = Box((bx, top + 0.025 + hh, bz), (0.1, hh, 0.14), rng.uniform(-1, 1), label=BOOKS)
            book.colour = _random_colour(rng)
            parts.append(book)
        else:
            r = rng.uniform(0.04, 0.09)
            parts.append(Sphere((bx, top + 0.025 + r, bz), r, label=OBJECTS, colour=_random_colour(rng)))
    return parts


def _chair(rng: np.random.Generator, x: float, z: float) -> list[Primitive]:
    colour, yaw = _colour(rng, (0.3, 0.25, 0.35), 0.15), float(rng.uniform(-np.pi, np.pi))
    seat = Box((x, 0.45, z), (0.22, 0.03, 0.22), yaw, label=CHAIR, colour=colour)
    back_x, back_z = x - 0.2 * np.sin(yaw), z - 0.2 * np.cos(yaw)
    back = Box((back_x, 0.72, back_z), (0.22, 0.25, 0.03), yaw, label=CHAIR, colour=colour)
    legs: list[Primitive] = [
        Cylinder((x + sx * 0.17, 0.0, z + sz * 0.17), 0.025, 0.42, label=CHAIR, colour=colour)
        for sx, sz in ((-1, -1), (-1, 1), (1, -1), (1, 1))
    ]
    return [seat, back, *legs]


def _bed(rng: np.random.Generator, x: float, z: float) -> list[Primitive]:
    half = (rng.uniform(0.7, 1.0), 0.25, rng.uniform(0.9, 1.1))
    colour = _colour(rng, (0.8, 0.8, 0.85))
    return [Box((x, 0.25, z), half, rng.uniform(-0.3, 0.3), label=BED, colour=colour, texture="stripes")]


def _sofa(rng: np.random.Generator, x: float, z: float) -> list[Primitive]:
    colour, yaw = _colour(rng, (0.35, 0.45, 0.6), 0.15), float(rng.uniform(-0.3, 0.3))
    base = Box((x, 0.22, z), (0.9, 0.22, 0.4), yaw, label=SOFA, colour=colour)
    back_centre = (x + 0.35 * np.sin(yaw), 0.6, z + 0.35 * np.cos(yaw))
    return [base, Box(back_centre, (0.9, 0.3, 0.1), yaw, label=SOFA, colour=colour)]


def _cabinet(rng: np.random.Generator, x: float, wall: float) -> list[Primitive]:
    """A cabinet against the far wall, a low one sometimes with a TV on it."""
    tall = rng.uniform(0.8, 2.0)
    colour = _colour(rng, (0.5, 0.35, 0.2))
    half = (rng.uniform(0.4, 0.8), tall / 2, 0.28)
    body = Box((x, tall / 2, wall - 0.3), half, label=FURNITURE, colour=colour, texture="stripes")
    parts: list[Primitive] = [body]
    if tall < 1.2 and rng.random() < 0.7:
        screen = _colour(rng, (0.08, 0.08, 0.1), 0.03)
        parts.append(Box((x, tall + 0.3, wall - 0.35), (0.45, 0.28, 0.03), label=TV, colour=screen))
    return parts


def _wall_decor(rng: np.random.Generator, size: tuple[float, float, float]) -> Box:
    """A window or a picture on the far wall or a side wall (a thin box standing off the wall)."""
    w, h, d = size
    window = rng.random() < 0.5
    kind, base = (WINDOW, (0.7, 0.85, 0.95)) if window else (PICTURE, tuple(rng.uniform(0.1, 0.9, 3)))
    hx, hy, cy = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5), rng.uniform(1.2, min(1.9, h - 0.6))
    if rng.random() < 0.6:
        centre, half = (rng.uniform(-w / 2 + 0.8, w / 2 - 0.8), cy, d - 0.02), (hx, hy, 0.03)
    else:
        centre, half = (rng.choice([-1, 1]) * (w / 2 - 0.02), cy, rng.uniform(1.5, d - 0.8)), (0.03, hy, hx)
    return Box(centre, half, label=kind, colour=_colour(rng, base, 0.05))


def _room_item(rng: np.random.Generator, x: float, z: float, far_wall: float) -> list[Primitive]:
    """One piece of furniture (or a standing object) at (x, z) on the floor."""
    builders: dict[int, Callable[[], list[Primitive]]] = {
        BED: lambda: _bed(rng, x, z),
        SOFA: lambda: _sofa(rng, x, z),
        FURNITURE: lambda: _cabinet(rng, x, far_wall),
        TABLE: lambda: _table(rng, x, z),
        CHAIR: lambda: _chair(rng, x, z),
        OBJECTS: lambda: [Cylinder((x, 0.0, z), rng.uniform(0.1, 0.25), rng.uniform(0.2, 0.8), label=OBJECTS,
                                   colour=_random_colour(rng))],
    }  # fmt: skip
    return builders[int(rng.choice(list(builders)))]()


def nyu_room(rng: np.random.Generator, width: int, height: int) -> Layout:
    """A furnished room seen from a standing person's head height (NYU-v2's 13 classes)."""
    w, h, d = rng.uniform(3.2, 5.0), rng.uniform(2.4, 3.0), rng.uniform(3.5, 6.0)
    position = (rng.uniform(-0.3, 0.3) * w, rng.uniform(1.1, 1.6), rng.uniform(0.15, 0.5))
    pose = {"position": position, "pitch": rng.uniform(0.05, 0.35), "yaw": rng.uniform(-0.35, 0.35)}
    camera = _camera(width, height, KINECT_FX_PER_WIDTH, **pose)
    prims: list[Primitive] = [_room_shell(rng, (w, h, d))]
    prims += [_wall_decor(rng, (w, h, d)) for _ in range(int(rng.integers(1, 3)))]
    for _ in range(int(rng.integers(2, 6))):
        prims += _room_item(rng, rng.uniform(-w / 2 + 0.7, w / 2 - 0.7), rng.uniform(1.6, d - 0.7), d)
    return Layout(camera, prims)


def _car(rng: np.random.Generator, x: float, z: float, instance: int) -> list[Primitive]:
    """A car (or, 15 % of the time, a truck): body and cabin boxes of one instance."""
    colour, yaw = _random_colour(rng), float(rng.uniform(-0.1, 0.1))
    label = TRUCK if rng.random() < 0.15 else CAR
    s = 1.6 if label == TRUCK else 1.0
    ident = label * 1000 + instance
    body = Box((x, 0.55 * s, z), (0.9, 0.35 * s, 2.1 * s), yaw, label=label, instance=ident, colour=colour)
    cabin = Box((x, 1.15 * s, z - 0.2), (0.75, 0.28 * s, 1.1 * s), yaw, label=label, instance=ident)
    cabin.colour = _colour(rng, colour, 0.05)
    return [body, cabin]


def _person(rng: np.random.Generator, x: float, z: float, instance: int) -> list[Primitive]:
    tall = rng.uniform(1.55, 1.9)
    clothes = _random_colour(rng, 0.1, 0.8)
    body = Cylinder((x, 0.15, z), 0.2, tall - 0.4, label=PERSON, instance=instance, colour=clothes)
    skin = _colour(rng, (0.8, 0.65, 0.5))
    return [body, Sphere((x, 0.15 + tall - 0.28, z), 0.12, label=PERSON, instance=instance, colour=skin)]


def _buildings(rng: np.random.Generator, side: int, setback: float) -> list[Primitive]:
    """A row of buildings along z from the camera to 150 m, their fronts ``setback`` from the axis."""
    prims: list[Primitive] = []
    z = rng.uniform(0.0, 4.0)
    while z < 150.0:
        length, tall = rng.uniform(8.0, 22.0), rng.uniform(6.0, 25.0)
        x = side * (setback + 5.0 + rng.uniform(0.0, 2.0))
        colour = _colour(rng, (0.55, 0.5, 0.45), 0.15)
        prims.append(Box((x, tall / 2, z + length / 2), (5.0, tall / 2, length / 2), label=BUILDING,
                         colour=colour, texture="stripes"))  # fmt: skip
        z += length + rng.uniform(0.0, 3.0)
    return prims


def _kerbside(rng: np.random.Generator, side: int, x: float) -> list[Primitive]:
    """Poles with a sign or a traffic light, and trees, at intervals along the kerb at ``x``."""
    prims: list[Primitive] = []
    for z in np.arange(rng.uniform(4.0, 12.0), 90.0, rng.uniform(12.0, 25.0)):
        if rng.random() < 0.5:
            kind = SIGN if rng.random() < 0.6 else LIGHT
            colour = (0.85, 0.8, 0.1) if kind == SIGN else (0.15, 0.15, 0.15)
            prims.append(Cylinder((x, 0.15, z), 0.08, 4.5, label=POLE, colour=(0.35, 0.35, 0.38)))
            prims.append(Box((x, 3.6, z - 0.05), (0.35, 0.35, 0.04), label=kind, colour=colour))
        else:
            tx = x + side * 0.6
            prims.append(Cylinder((tx, 0.15, z), 0.15, 2.5, label=VEGETATION, colour=(0.35, 0.25, 0.15)))
            crown = _colour(rng, (0.2, 0.45, 0.15))
            radius = rng.uniform(1.2, 2.0)
            prims.append(Sphere((tx, 3.5, z), radius, label=VEGETATION, colour=crown, texture="noise"))
    return prims


def _street_side(rng: np.random.Generator, side: int, road: float, walk: float) -> list[Primitive]:
    """Sidewalk, kerbside poles and trees, a fence or grass strip, buildings (side -1 left, +1 right)."""
    grey = _colour(rng, (0.6, 0.58, 0.55))
    prims: list[Primitive] = [Box((side * (road / 2 + walk / 2), 0.075, 80.0), (walk / 2, 0.075, 80.0),
                                  label=SIDEWALK, colour=grey, texture="checker")]  # fmt: skip
    prims += _buildings(rng, side, road / 2 + walk)
    prims += _kerbside(rng, side, side * (road / 2 + 0.5))
    if rng.random() < 0.5:  # a low fence or a strip of grass between the sidewalk and the buildings
        kind = FENCE if rng.random() < 0.5 else TERRAIN
        tall, colour = (1.0, (0.5, 0.45, 0.4)) if kind == FENCE else (0.17, (0.45, 0.6, 0.3))
        prims.append(Box((side * (road / 2 + walk + 1.0), tall / 2, 60.0), (0.6, tall / 2, 60.0), label=kind,
                         colour=colour))  # fmt: skip
    return prims


def cityscapes_street(rng: np.random.Generator, width: int, height: int) -> Layout:
    """A street seen from a car's windscreen: road, sidewalks, buildings, poles, trees, cars, people."""
    road, walk = rng.uniform(7.0, 12.0), rng.uniform(2.5, 4.0)
    position = (rng.uniform(-1.0, 1.0), rng.uniform(1.2, 1.4), 0.0)
    pose = {"position": position, "pitch": rng.uniform(0.0, 0.05), "yaw": rng.uniform(-0.08, 0.08)}
    camera = _camera(width, height, CITYSCAPES_FX_PER_WIDTH, **pose)
    asphalt = _colour(rng, (0.3, 0.3, 0.32), 0.05)
    prims: list[Primitive] = [GroundPlane(0.0, label=ROAD, colour=asphalt, texture="noise")]
    for side in (-1, 1):
        prims += _street_side(rng, side, road, walk)
    for k in range(int(rng.integers(1, 6))):
        lane = rng.choice([-1, 1]) * road / 4
        prims += _car(rng, lane + rng.uniform(-0.5, 0.5), rng.uniform(7.0, 50.0), k)
    on_sidewalk = lambda: rng.choice([-1, 1]) * (road / 2 + rng.uniform(0.5, walk - 0.3))  # noqa: E731
    for k in range(int(rng.integers(0, 5))):
        prims += _person(rng, on_sidewalk(), rng.uniform(5.0, 35.0), PERSON * 1000 + k)
    if rng.random() < 0.3:  # a crowd: several people annotated as one region with the bare label id
        z = rng.uniform(15.0, 40.0)
        for _ in range(3):
            prims += _person(rng, on_sidewalk(), z + rng.uniform(-1, 1), PERSON)
    return Layout(camera, prims)
