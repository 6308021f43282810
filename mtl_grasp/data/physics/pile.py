"""A bin and a pile of articles dropped into it and settled by pybullet.

World frame: origin at the centre of the bin floor's top surface, z up, x along the bin's length
(metres). The bin is built from five boxes (floor and four walls; size, wall height, colour and
texture vary) standing on a table slab. Articles (:mod:`.articles`) are dropped in waves from just
above the current pile, simulated until every body is at rest, and articles that end outside the bin
(on the rim, on the table) are removed, after which the rest settles again. A pile that does not come
to rest within the step budget raises :class:`UnsettledPile` (the generator then draws the scene again
and logs why).
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtl_grasp.data.physics.articles import draw_article, paint_texture, random_colour
from mtl_grasp.data.physics.engine import pybullet, pybullet_data_path

__all__ = [
    "BinSpec",
    "Item",
    "Pile",
    "UnsettledPile",
    "build_pile",
    "geometry_points",
    "mesh_vertices",
    "pose_matrix",
    "rests_on",
]

TIME_STEP = 1.0 / 120.0
SOLVER_ITERATIONS = 12
REST_LINEAR = 0.01  # m/s: a body slower than this ...
REST_ANGULAR = 0.15  # rad/s: ... and turning slower than this is at rest
WAVE_STEPS = 36  # steps simulated after each wave of articles before the next one is dropped
MAX_SETTLE_STEPS = 900  # budget for the final settling (7.5 s of simulated time)
INSIDE_TOLERANCE = 0.012  # m an article's bounding box may reach over the inner wall face
FLOOR_TOLERANCE = 0.02  # m an article's bounding box may reach below the floor (margins, contact depth)
FLOOR_THICKNESS = 0.04  # m
REST_NORMAL_Z = 0.5  # a contact normal at most 60 degrees from vertical carries weight


class UnsettledPile(RuntimeError):  # noqa: N818 - names the condition the message explains
    """The pile did not come to rest (or no article stayed in the bin); the message says why."""


@dataclass(frozen=True)
class BinSpec:
    """Inner length (x), width (y) and wall height (m), wall thickness, colour and floor texture."""

    length: float
    width: float
    height: float
    wall: float
    colour: tuple[float, float, float]
    table_colour: tuple[float, float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> BinSpec:
        colours = [(0.16, 0.3, 0.6), (0.45, 0.45, 0.47), (0.12, 0.12, 0.13), (0.2, 0.42, 0.28),
                   (0.62, 0.5, 0.33), (0.7, 0.25, 0.15), (0.75, 0.75, 0.72)]  # fmt: skip
        pick = np.asarray(colours[int(rng.integers(len(colours)))])
        base = np.clip(pick * rng.uniform(0.85, 1.15, 3), 0, 1)
        return cls(
            length=float(rng.uniform(0.40, 0.60)), width=float(rng.uniform(0.30, 0.42)),
            height=float(rng.uniform(0.10, 0.20)), wall=float(rng.uniform(0.012, 0.025)),
            colour=(float(base[0]), float(base[1]), float(base[2])),
            table_colour=random_colour(rng, saturation=(0.0, 0.3), value=(0.35, 0.8)),
        )  # fmt: skip

    def as_dict(self) -> dict:
        return {
            "inner_length_cm": round(100 * self.length, 3),
            "inner_width_cm": round(100 * self.width, 3),
            "wall_height_cm": round(100 * self.height, 3),
            "wall_thickness_cm": round(100 * self.wall, 3),
        }


@dataclass
class Item:
    """One article in the simulation: its pybullet body, category id and the geometry it was made of."""

    body: int
    category_id: int
    spec: dict
    scale: float = 1.0  # mesh scale applied to the URDF (1 for primitives)
    link_in_com: np.ndarray = field(
        default_factory=lambda: np.eye(4)
    )  # T_com_link: URDF link frame in the COM frame


@dataclass
class Pile:
    """A settled bin: the bin's bodies (floor, walls, table) and the articles inside it."""

    client: int
    bin: BinSpec
    bin_bodies: list[int]
    items: list[Item]
    removed: int  # articles removed because they ended outside the bin


def pose_matrix(position, quaternion) -> np.ndarray:
    """4x4 transform from a pybullet position and (x, y, z, w) quaternion."""
    pose = np.eye(4)
    pose[:3, :3] = np.asarray(pybullet().getMatrixFromQuaternion(quaternion)).reshape(3, 3)
    pose[:3, 3] = position
    return pose


def _texture(client: int, rng: np.random.Generator, style: str, colour, folder: Path, name: str) -> int:
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), cv2.cvtColor(paint_texture(rng, style, colour), cv2.COLOR_RGB2BGR))
    return pybullet().loadTexture(str(path), physicsClientId=client)


def _static_box(client: int, half, position, rgba) -> int:
    pb = pybullet()
    col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=client)
    vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=client)
    return pb.createMultiBody(0, col, vis, position, physicsClientId=client)


def _build_bin(client: int, spec: BinSpec, rng: np.random.Generator, folder: Path) -> list[int]:
    """Table slab, floor and four walls (static). The floor's top surface is z = 0; the floor is
    ``FLOOR_THICKNESS`` thick so that falling articles cannot tunnel through it."""
    pb = pybullet()
    L, W, H, t, f = spec.length, spec.width, spec.height, spec.wall, FLOOR_THICKNESS
    rgba = (*spec.colour, 1.0)
    table = _static_box(client, (1.5, 1.5, 0.02), (0, 0, -f - 0.02), (*spec.table_colour, 1.0))
    parts = [
        _static_box(client, (L / 2 + t, W / 2 + t, f / 2), (0, 0, -f / 2), rgba),
        _static_box(client, (t / 2, W / 2 + t, H / 2), (L / 2 + t / 2, 0, H / 2), rgba),
        _static_box(client, (t / 2, W / 2 + t, H / 2), (-L / 2 - t / 2, 0, H / 2), rgba),
        _static_box(client, (L / 2, t / 2, H / 2), (0, W / 2 + t / 2, H / 2), rgba),
        _static_box(client, (L / 2, t / 2, H / 2), (0, -W / 2 - t / 2, H / 2), rgba),
    ]
    tex = _texture(client, rng, "plain", (1.0, 1.0, 1.0), folder, "bin")
    table_tex = _texture(client, rng, "plain", (1.0, 1.0, 1.0), folder, "table")
    for body in parts:
        pb.changeVisualShape(body, -1, textureUniqueId=tex, physicsClientId=client)
    pb.changeVisualShape(table, -1, textureUniqueId=table_tex, physicsClientId=client)
    return [table, *parts]


def _primitive(client: int, spec: dict, position, orientation) -> int:
    pb = pybullet()
    shape, d = spec["shape"], spec["dims"]
    if shape == "box":
        geo = dict(shapeType=pb.GEOM_BOX, halfExtents=[d[0] / 2, d[1] / 2, d[2] / 2])
        col = pb.createCollisionShape(physicsClientId=client, **geo)
        vis = pb.createVisualShape(physicsClientId=client, **geo)
    elif shape == "sphere":
        col = pb.createCollisionShape(pb.GEOM_SPHERE, radius=d[0], physicsClientId=client)
        vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=d[0], physicsClientId=client)
    else:  # cylinder / capsule: radius, length along the local z axis
        kind = pb.GEOM_CYLINDER if shape == "cylinder" else pb.GEOM_CAPSULE
        col = pb.createCollisionShape(kind, radius=d[0], height=d[1], physicsClientId=client)
        vis = pb.createVisualShape(kind, radius=d[0], length=d[1], physicsClientId=client)
    return pb.createMultiBody(spec["mass"], col, vis, position, orientation, physicsClientId=client)


def _mesh(client: int, spec: dict, position, orientation) -> tuple[int, float]:
    """Load the URDF scaled so that its visual mesh's largest bounding-box extent is ``spec['dims'][0]``."""
    verts = mesh_vertices(spec["mesh"])
    scale = spec["dims"][0] / max(float((verts.max(axis=0) - verts.min(axis=0)).max()), 1e-6)
    path = str(Path(pybullet_data_path()) / spec["mesh"])
    body = pybullet().loadURDF(path, position, orientation, globalScaling=scale, physicsClientId=client)
    return body, float(scale)


def _set_dynamics(client: int, item: Item) -> None:
    """Mass, a box-approximated inertia (the URDFs ship placeholder inertias), friction and damping."""
    pb = pybullet()
    lo, hi = np.asarray(pb.getAABB(item.body, -1, physicsClientId=client))
    ext = np.maximum(hi - lo, 1e-3)
    m = item.spec["mass"]
    inertia = [m / 12 * (ext[1] ** 2 + ext[2] ** 2), m / 12 * (ext[0] ** 2 + ext[2] ** 2),
               m / 12 * (ext[0] ** 2 + ext[1] ** 2)]  # fmt: skip
    pb.changeDynamics(
        item.body, -1, mass=m, localInertiaDiagonal=inertia, lateralFriction=0.6, rollingFriction=0.002,
        spinningFriction=0.002, restitution=0.05, linearDamping=0.1, angularDamping=0.3,
        physicsClientId=client,
    )  # fmt: skip
    info = pb.getDynamicsInfo(item.body, -1, physicsClientId=client)
    com_in_link = pose_matrix(info[3], info[4])  # T_link_com: the inertial (COM) frame in the link frame
    item.link_in_com = np.linalg.inv(com_in_link)


def _spawn(client: int, rng: np.random.Generator, spec: dict, category: int, position, folder: Path, k: int):
    pb = pybullet()
    orientation = pb.getQuaternionFromEuler(rng.uniform(-math.pi, math.pi, 3).tolist())
    if spec["shape"] == "mesh":
        body, scale = _mesh(client, spec, position, orientation)
    else:
        body, scale = _primitive(client, spec, position, orientation), 1.0
    if spec["colour"] is not None:
        pb.changeVisualShape(body, -1, rgbaColor=(*spec["colour"], 1.0), physicsClientId=client)
    if spec["shape"] != "mesh" and spec["texture"] != "plain":
        tex = _texture(client, rng, spec["texture"], spec["colour"], folder, f"item{k}")
        pb.changeVisualShape(body, -1, rgbaColor=(1, 1, 1, 1), textureUniqueId=tex, physicsClientId=client)
    item = Item(body, category, spec, scale)
    _set_dynamics(client, item)
    return item


def _extent(spec: dict) -> float:
    """Radius of a sphere around the article (m)."""
    d = spec["dims"]
    if spec["shape"] == "box":
        return 0.5 * math.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    if spec["shape"] == "cylinder":
        return math.hypot(d[0], d[1] / 2)
    if spec["shape"] == "capsule":
        return d[1] / 2 + d[0]
    return d[0] if spec["shape"] == "sphere" else 0.5 * math.sqrt(3) * d[0]


def _wave_positions(
    rng, radii: list[float], spec: BinSpec, floor_z: float
) -> list[tuple[float, float, float]]:
    """Non-overlapping drop positions for one wave: random x, y inside the bin, stacked in z."""
    placed: list[tuple[np.ndarray, float]] = []
    out = []
    for r in radii:
        hx, hy = max(spec.length / 2 - r, 0.0), max(spec.width / 2 - r, 0.0)
        p = np.array([rng.uniform(-hx, hx), rng.uniform(-hy, hy), floor_z + r + 0.01])
        for q, rq in placed:  # rise above every earlier sphere it would overlap
            if np.hypot(*(p[:2] - q[:2])) < r + rq:
                p[2] = max(p[2], q[2] + r + rq + 0.005)
        placed.append((p, r))
        out.append((float(p[0]), float(p[1]), float(p[2])))
    return out


def _pile_top(client: int, bodies: list[int]) -> float:
    pb = pybullet()
    return max([0.0] + [pb.getAABB(b, -1, physicsClientId=client)[1][2] for b in bodies])


def _at_rest(client: int, bodies: list[int]) -> bool:
    pb = pybullet()
    for b in bodies:
        lin, ang = pb.getBaseVelocity(b, physicsClientId=client)
        if np.linalg.norm(lin) > REST_LINEAR or np.linalg.norm(ang) > REST_ANGULAR:
            return False
    return True


def _settle(client: int, bodies: list[int], budget: int) -> int:
    """Step until every body is at rest (checked every 6 steps); return the steps used or raise."""
    pb = pybullet()
    for step in range(1, budget + 1):
        pb.stepSimulation(physicsClientId=client)
        if step % 6 == 0 and _at_rest(client, bodies):
            return step
    raise UnsettledPile(
        f"the pile was still moving after {budget} simulation steps ({budget * TIME_STEP:.1f} s)"
    )


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r, a = np.sqrt(1 - z * z), math.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(a), r * np.sin(a), z], 1)


# 96 directions scaled so that their convex hull contains the unit sphere (every direction is within
# 15.4 degrees of one of them, and 1.04 * cos(15.4 deg) > 1)
_ENCLOSING_SPHERE = _fibonacci_sphere(96) * 1.04


@functools.cache
def mesh_vertices(urdf: str) -> np.ndarray:
    """Vertices [M, 3] (float64, metres) of a pybullet_data URDF's visual mesh (every ``v`` line of its
    OBJ file) in its link frame at ``globalScaling`` 1 (URDF mesh scale and visual origin applied)."""
    path = Path(pybullet_data_path()) / urdf
    visual = ET.parse(path).getroot().find("link/visual")
    mesh = visual.find("geometry/mesh") if visual is not None else None
    if visual is None or mesh is None or not mesh.get("filename"):
        raise ValueError(f"{path}: expected a link with a visual mesh")
    scale = np.array([float(x) for x in mesh.get("scale", "1 1 1").split()])
    origin = visual.find("origin")
    xyz = np.array(
        [float(x) for x in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()]
    )
    rpy = [float(x) for x in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()]
    rot = np.asarray(pybullet().getMatrixFromQuaternion(pybullet().getQuaternionFromEuler(rpy))).reshape(3, 3)
    lines = (path.parent / str(mesh.get("filename"))).read_text().splitlines()
    verts = np.array([[float(x) for x in ln.split()[1:4]] for ln in lines if ln.startswith("v ")])
    return (verts * scale) @ rot.T + xyz


def geometry_points(client: int, item: Item, enclosing: bool = False) -> np.ndarray:
    """World points [M, 3] of the article: their bounding box is the article's exact bounding box; with
    ``enclosing`` their convex hull contains the whole article (for image windows under perspective).
    Boxes: corners; cylinders: rim polygons (``enclosing``: circumscribed); spheres and capsule caps:
    axis extremes (``enclosing``: 96 directions on a slightly larger sphere); meshes: the visual mesh's
    vertices."""
    pb = pybullet()
    shape, d = item.spec["shape"], item.spec["dims"]
    pose = pose_matrix(*pb.getBasePositionAndOrientation(item.body, physicsClientId=client))
    if shape == "mesh":
        link = pose @ item.link_in_com
        return (mesh_vertices(item.spec["mesh"]) * item.scale) @ link[:3, :3].T + link[:3, 3]
    rot, centre = pose[:3, :3], pose[:3, 3]
    if shape == "box":
        local = np.array(
            [
                [sx * d[0], sy * d[1], sz * d[2]]
                for sx in (-0.5, 0.5)
                for sy in (-0.5, 0.5)
                for sz in (-0.5, 0.5)
            ]
        )
        return local @ rot.T + centre
    if shape == "cylinder":
        a = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        r = d[0] / math.cos(math.pi / 32) if enclosing else d[0]  # circumscribed polygon encloses the rim
        ring = np.stack([r * np.cos(a), r * np.sin(a), np.zeros_like(a)], 1)
        local = np.concatenate([ring + [0, 0, d[1] / 2], ring - [0, 0, d[1] / 2]])
        return local @ rot.T + centre
    ends = [centre] if shape == "sphere" else [centre + rot[:, 2] * d[1] / 2, centre - rot[:, 2] * d[1] / 2]
    if enclosing:
        offsets = _ENCLOSING_SPHERE * d[0]
    else:
        offsets = np.concatenate([np.eye(3), -np.eye(3)]) * d[0]  # a sphere's extremes along the world axes
    return np.concatenate([e + offsets for e in ends])


def _inside(client: int, item: Item, spec: BinSpec) -> bool:
    pts = geometry_points(client, item)
    tol = INSIDE_TOLERANCE if item.spec["shape"] == "mesh" else INSIDE_TOLERANCE / 2
    in_x = (np.abs(pts[:, 0]) <= spec.length / 2 + tol).all()
    in_y = (np.abs(pts[:, 1]) <= spec.width / 2 + tol).all()
    return bool(in_x and in_y and (pts[:, 2] >= -FLOOR_TOLERANCE).all())


def build_pile(client: int, rng: np.random.Generator, n_objects: int, folder: Path) -> Pile:
    """Bin + ``n_objects`` articles dropped in waves and settled; outside articles removed.

    ``folder`` receives the scene's texture PNGs (pybullet loads textures from files).
    Raises :class:`UnsettledPile` when the pile does not come to rest or the bin ends empty.
    """
    pb = pybullet()
    pb.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, numSolverIterations=SOLVER_ITERATIONS,
                                 deterministicOverlappingPairs=1, physicsClientId=client)  # fmt: skip
    spec = BinSpec.draw(rng)
    bin_bodies = _build_bin(client, spec, rng, folder)
    items: list[Item] = []
    drawn = [draw_article(rng) for _ in range(n_objects)]
    per_wave = max(3, int(spec.length * spec.width / 0.02))
    for start in range(0, n_objects, per_wave):
        wave = drawn[start : start + per_wave]
        top = _pile_top(client, [it.body for it in items])
        spots = _wave_positions(rng, [_extent(s) for _, s in wave], spec, top)
        for (category, s), pos in zip(wave, spots):
            items.append(_spawn(client, rng, s, category, pos, folder, len(items)))
        for _ in range(WAVE_STEPS):
            pb.stepSimulation(physicsClientId=client)
    removed = 0
    for _ in range(3):
        _settle(client, [it.body for it in items], MAX_SETTLE_STEPS)
        outside = [it for it in items if not _inside(client, it, spec)]
        if not outside:
            break
        for it in outside:
            pb.removeBody(it.body, physicsClientId=client)
        removed += len(outside)
        items = [it for it in items if it not in outside]
    else:
        raise UnsettledPile("articles kept falling out of the bin after three rounds of removal")
    if not items:
        raise UnsettledPile(f"none of the {n_objects} articles stayed in the bin")
    return Pile(client, spec, bin_bodies, items, removed)


def rests_on(pile: Pile) -> dict[int, list[dict]]:
    """Support relations from the simulator's contact points, by item index (0-based).

    Item ``k`` rests on ``j`` when they touch and the contact normal (pointing from ``j`` to ``k``) is
    at most 60 degrees from vertical; ``j = -1`` is the bin (floor or walls). Per support: the number of
    contact points, the mean normal z and the summed normal force (N; 0 for bodies asleep).
    """
    pb = pybullet()
    pb.performCollisionDetection(physicsClientId=pile.client)
    index = {it.body: k for k, it in enumerate(pile.items)}
    out: dict[int, list[dict]] = {}
    for k, it in enumerate(pile.items):
        found: dict[int, list] = {}
        for c in pb.getContactPoints(bodyA=it.body, physicsClientId=pile.client):
            other = c[2]
            j = index.get(other, -1 if other in pile.bin_bodies else None)
            normal_z, distance = c[7][2], c[8]  # normal on B, pointing from B towards A (= item k)
            if j is None or j == k or normal_z < REST_NORMAL_Z or distance > 0.002:
                continue
            found.setdefault(j, []).append((normal_z, c[9]))
        out[k] = [{"index": j, "points": len(v), "normal_z": float(np.mean([n for n, _ in v])),
                   "force": float(sum(f for _, f in v))} for j, v in sorted(found.items())]  # fmt: skip
    return out
