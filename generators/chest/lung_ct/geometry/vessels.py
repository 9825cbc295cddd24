"""The airway and vessel network: central structures from a data table, pulmonary trees grown into the lungs.

The trachea and bronchi, the great vessels, the pulmonary arteries and veins,
the oesophagus, the mediastinal lymph nodes and the clavicles are smooth
tubes through control points listed, by name, in ``airways_vessels.json``
(coordinates relative to the patient's carina, arch, heart and spine,
scaled to the patient).  From the lobar bronchi, the hila and the pulmonary
veins, bifurcating trees grow into each lung (:func:`_grow_tree`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .anatomy import ChestAnatomy, unit_vector
from .fields import BodyLayers, HeightProfile, Plane, lung_side, point_layers
from .labels import Label
from .tubes import TubeSet, polyline_tubes

__all__ = ["Network", "network"]


# ---------------------------------------------------------------------------
# Tree growth in a coarse map of the lungs
# ---------------------------------------------------------------------------


class LungDomain:
    """Coarse 4 mm map of the lungs (before tubes) with distance to the pleura."""

    spacing = 4.0

    def __init__(self, anat: ChestAnatomy):
        s = self.spacing
        a = anat.body_half_width_mm
        yb = anat.body_centre_y_mm
        self.x0 = -a - 8.0
        self.y0 = yb - anat.body_half_depth_anterior_mm - 8.0
        self.z0 = anat.z_apex_mm + 8.0  # top; z decreases with index
        nx = int((2 * a + 16.0) / s) + 1
        ny = int((anat.body_half_depth_anterior_mm + anat.body_half_depth_posterior_mm + 16.0) / s) + 1
        nz = int((anat.z_apex_mm - anat.z_dome_left_mm + 130.0) / s) + 1
        x = self.x0 + s * np.arange(nx)
        y = self.y0 + s * np.arange(ny)
        pl = Plane(anat, x[None, :], y[:, None])
        side = np.zeros((nz, ny, nx), np.uint8)
        for i in range(nz):
            z = self.z0 - s * i
            pr = HeightProfile(anat, z)
            side[i] = lung_side(anat, pl, pr, BodyLayers(anat, pl, pr))
        self.side = side
        dist = np.zeros(side.shape, np.float32)
        for v in (1, 2):
            m = side == v
            dist = np.maximum(dist, ndimage.distance_transform_edt(m, sampling=s).astype(np.float32))
        self.dist = dist
        gz, gy, gx = np.gradient(dist, s)
        # Index axis 0 runs towards -z.
        self.grad = np.stack([gx, gy, -gz], axis=-1).astype(np.float32)

    def index(self, p: np.ndarray):
        s = self.spacing
        i = np.rint((self.z0 - p[:, 2]) / s).astype(np.int64)
        j = np.rint((p[:, 1] - self.y0) / s).astype(np.int64)
        k = np.rint((p[:, 0] - self.x0) / s).astype(np.int64)
        nz, ny, nx = self.side.shape
        inb = (i >= 0) & (i < nz) & (j >= 0) & (j < ny) & (k >= 0) & (k < nx)
        return np.where(inb, i, 0), np.where(inb, j, 0), np.where(inb, k, 0), inb

    def lookup(self, p: np.ndarray):
        i, j, k, inb = self.index(p)
        side = np.where(inb, self.side[i, j, k], 0)
        dist = np.where(inb, self.dist[i, j, k], 0.0)
        grad = np.where(inb[:, None], self.grad[i, j, k], 0.0)
        return side, dist, grad


def _perpendicular(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=d.shape)
    v -= (v * d).sum(-1, keepdims=True) * d
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _rotate_about(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues rotation of vectors ``v`` about unit ``axis`` (row-wise)."""
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return v * ca + np.cross(axis, v) * sa + axis * (axis * v).sum(-1, keepdims=True) * (1 - ca)


def _grow_tree(
    rng: np.random.Generator,
    dom: LungDomain,
    roots: list[tuple[np.ndarray, np.ndarray, float, int]],
    r_min: float,
    length_ratio: tuple[float, float],
    taper: float = 0.9,
    max_segments: int = 60000,
):
    """Grow bifurcating trees from roots ``(start, direction, radius, side)``.

    Branch radii follow Murray's law (r^3 = r1^3 + r2^3) with random asymmetry,
    branching angles follow from the radii, and branches bend away from the
    pleura; a branch that would leave its lung is shortened or stops.
    """
    pos = np.array([r[0] for r in roots], float)
    dirs = np.array([unit_vector(r[1]) for r in roots], float)
    rad = np.array([r[2] for r in roots], float)
    side = np.array([r[3] for r in roots], np.uint8)
    origin = pos.copy()
    plane = _perpendicular(dirs, rng)
    segs = []
    count = 0
    while len(pos) and count < max_segments:
        n = len(pos)
        length = np.clip(rad * rng.uniform(*length_ratio, n), 2.5, 32.0)
        end = pos + dirs * length[:, None]
        s_end, d_end, _ = dom.lookup(end)
        ok = (s_end == side) & (d_end >= 1.5 + rad)
        for shrink, bend in ((0.6, 0.0), (0.6, 1.2), (0.35, 2.5)):
            retry = ~ok
            if not retry.any():
                break
            d_try = dirs[retry]
            if bend:
                # Turn away from the pleura before giving up.
                _, _, g = dom.lookup(pos[retry])
                g = g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-6)
                d_try = d_try + bend * g
                d_try /= np.maximum(np.linalg.norm(d_try, axis=-1, keepdims=True), 1e-9)
            e2 = pos[retry] + d_try * (length[retry] * shrink)[:, None]
            s2, d2, _ = dom.lookup(e2)
            good = (s2 == side[retry]) & (d2 >= 1.0 + rad[retry])
            idx = np.nonzero(retry)[0][good]
            end[idx] = e2[good]
            dirs[idx] = d_try[good]
            ok[idx] = True
        if not ok.any():
            break
        pos, end, dirs, rad, side, origin, plane = (a[ok] for a in (pos, end, dirs, rad, side, origin, plane))
        n = len(pos)
        r_end = rad * taper
        segs.append((pos, end, rad, r_end))
        count += n
        # Children: Murray's law with an asymmetric split.
        # Mostly monopodial: a parent continuing almost straight with a thinner side branch.
        k = 0.35 + 0.6 * rng.uniform(0.0, 1.0, n) ** 1.5
        r1 = r_end / (1.0 + k**3) ** (1.0 / 3.0)
        r2 = k * r1
        R2, a2, b2 = r_end**2, r1**2, r2**2
        th1 = np.arccos(np.clip((R2 * R2 + a2 * a2 - b2 * b2) / (2 * R2 * a2), -1, 1))
        th2 = np.arccos(np.clip((R2 * R2 + b2 * b2 - a2 * a2) / (2 * R2 * b2), -1, 1))
        th1 = np.clip(th1 * rng.uniform(0.8, 1.2, n), 0.12, 1.2)
        th2 = np.clip(th2 * rng.uniform(0.8, 1.2, n), 0.3, 1.35)
        # Successive branching planes turn by about 90 degrees.
        plane = _rotate_about(plane, dirs, np.full(n, np.pi / 2) + rng.normal(0.0, 0.35, n))
        plane -= (plane * dirs).sum(-1, keepdims=True) * dirs
        plane /= np.maximum(np.linalg.norm(plane, axis=-1, keepdims=True), 1e-9)
        c1 = dirs * np.cos(th1)[:, None] + plane * np.sin(th1)[:, None]
        c2 = dirs * np.cos(th2)[:, None] - plane * np.sin(th2)[:, None]
        _, dist, grad = dom.lookup(end)
        gnorm = grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-6)
        push = (0.9 * np.clip(1.0 - dist / 14.0, 0.0, 1.0))[:, None] * gnorm
        out = end - origin
        out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-6)
        kids_dir = np.vstack([c1, c2]) + np.vstack([push, push]) + 0.25 * np.vstack([out, out])
        kids_dir /= np.maximum(np.linalg.norm(kids_dir, axis=-1, keepdims=True), 1e-9)
        kids_r = np.concatenate([r1, r2])
        alive = kids_r >= r_min
        pos = np.vstack([end, end])[alive]
        dirs = kids_dir[alive]
        rad = kids_r[alive]
        side = np.concatenate([side, side])[alive]
        origin = np.vstack([origin, origin])[alive]
        plane = np.vstack([plane, plane])[alive]
        plane -= (plane * dirs).sum(-1, keepdims=True) * dirs
        plane /= np.maximum(np.linalg.norm(plane, axis=-1, keepdims=True), 1e-9)
    if not segs:
        z3 = np.zeros((0, 3))
        return z3, z3, np.zeros(0), np.zeros(0)
    return tuple(np.concatenate([s[i] for s in segs]) for i in range(4))


def _snap_into_lung(dom: LungDomain, p, direction, side: int, radius: float):
    """Walk from a hilar point along ``direction`` until well inside the lung."""
    p = np.asarray(p, float)
    d = unit_vector(direction)
    for i in range(40):
        q = p + d * (2.0 * i)
        s, dist, _ = dom.lookup(q[None])
        if s[0] == side and dist[0] >= 1.5 + radius:
            return q
    return None


# ---------------------------------------------------------------------------
# The table of named structures
# ---------------------------------------------------------------------------

_TABLE = json.loads(Path(__file__).with_name("airways_vessels.json").read_text(encoding="utf-8"))
_TERM = re.compile(r"(\d+(?:\.\d+)?)?\s*([a-z_][a-z0-9_]*(?:\.[a-z_]+)?)?")
_LUNG_CODES = {"right": 1, "left": 2}


@functools.cache
def _terms(expression: str) -> tuple[tuple[float, str | None], ...]:
    """``"carina_y - 40 scale_xy"`` -> ``((1.0, "carina_y"), (-40.0, "scale_xy"))``; None stands for mm."""
    pieces = re.split(r"([+-])", expression)
    pieces = pieces[1:] if not pieces[0].strip() else ["+", *pieces]
    terms = []
    for sign, body in zip(pieces[0::2], pieces[1::2]):
        match = _TERM.fullmatch(body.strip())
        if match is None or match.group(0) == "":
            raise ValueError(f"airways_vessels.json: cannot read the term {body.strip()!r} of {expression!r}.")
        number, name = match.groups()
        coefficient = float(number) if number else 1.0
        terms.append((-coefficient if sign == "-" else coefficient, name))
    return tuple(terms)


def _structures(group: dict) -> dict:
    """The named structures of a table group (its ``about`` note left out)."""
    return {name: value for name, value in group.items() if name != "about"}


def _vertebral_body(anatomy: ChestAnatomy, z: float) -> tuple[float, float, float]:
    """Centre y, half-width and half-depth of the vertebral body at height ``z``."""
    level = HeightProfile(anatomy, z)
    return float(level.y_vb), float(level.vb_a), float(level.vb_b)


class _PatientTable:
    """The table read for one patient: its references and landmarks, and expressions evaluated on them.

    Drawing from ``rng`` in a fixed order: the aortic and pulmonary trunk
    radii, then each jittered landmark in the table's order.
    """

    def __init__(self, anatomy: ChestAnatomy, rng: np.random.Generator):
        self.references = self._references(anatomy)
        self.references["aortic_radius"] = 14.0 * anatomy.scale_xy * rng.uniform(0.9, 1.15)
        self.references["pulmonary_trunk_radius"] = 12.5 * anatomy.scale_xy * rng.uniform(0.9, 1.1)
        self.landmarks: dict[str, np.ndarray] = {}
        for name, landmark in _TABLE["landmarks"].items():
            point = self.point(landmark["at"])
            if "jitter_mm" in landmark:
                point = point + rng.normal(0.0, landmark["jitter_mm"], 3)
            self.landmarks[name] = point

    @staticmethod
    def _references(anatomy: ChestAnatomy) -> dict[str, float]:
        """The patient's numbers the table's expressions refer to (see the table's ``about``)."""
        scale_xy = anatomy.scale_xy
        references = {
            "scale_xy": scale_xy,
            "scale_z": anatomy.scale_z,
            "lung_height": anatomy.lung_height_mm,
            "trachea_radius": anatomy.trachea_radius_mm,
            "carina_z": anatomy.z_carina_mm,
            "arch_z": anatomy.z_arch_mm,
            "sternal_notch_z": anatomy.z_sternal_notch_mm,
            "dome_right_z": anatomy.z_dome_right_mm,
            "dome_left_z": anatomy.z_dome_left_mm,
            # Vessels and the oesophagus run on beyond the scanned range.
            "above_scan_z": max(anatomy.scan_top_mm, anatomy.z_apex_mm) + 40.0,
            "below_scan_z": min(anatomy.scan_bottom_mm, anatomy.z_dome_left_mm - 120.0) - 40.0,
        }
        for name, level in (
            ("carina_vertebra", "carina_z"),
            ("dome_vertebra", "dome_left_z"),
            ("bottom_vertebra", "below_scan_z"),
        ):
            y, half_width, half_depth = _vertebral_body(anatomy, references[level])
            references.update({f"{name}.y": y, f"{name}.half_width": half_width, f"{name}.half_depth": half_depth})
        for name, chamber in zip(("left_ventricle", "left_atrium", "right_atrium", "right_ventricle"), anatomy.heart):
            references.update({f"{name}.x": chamber[0], f"{name}.y": chamber[1], f"{name}.z": chamber[2]})
        # The carina: a trachea's radius and 4 mm in front of the oesophagus, which lies on the vertebral body.
        references["carina_y"] = (
            references["carina_vertebra.y"]
            - references["carina_vertebra.half_depth"]
            - 14.0 * scale_xy
            - anatomy.trachea_radius_mm
            - 4.0
        )
        notch = point_layers(anatomy, 0.0, anatomy.body_centre_y_mm - 1.0, anatomy.z_sternal_notch_mm)
        references["chest_wall_front_y"] = anatomy.body_centre_y_mm - float(notch.r_wall)
        return references

    def value(self, expression: str) -> float:
        """Sum of an expression's terms, left to right (so the arithmetic follows the written order)."""
        total = None
        for coefficient, name in _terms(expression):
            if name is not None and name not in self.references:
                raise KeyError(f"airways_vessels.json: unknown reference {name!r} in {expression!r}.")
            term = coefficient if name is None else coefficient * self.references[name]
            total = term if total is None else total + term
        if total is None:
            raise ValueError(f"airways_vessels.json: the expression {expression!r} has no terms.")
        return total

    def point(self, point: str | list[str]) -> np.ndarray:
        """A landmark by name, or three expressions ``[x, y, z]``."""
        if isinstance(point, str):
            return self.landmarks[point]
        return np.array([self.value(axis) for axis in point])

    def curve(self, structure: dict) -> tuple[list[np.ndarray], list[float]]:
        """``(control points, radii)`` of a structure: its ``radii`` per point, or one ``radius`` for all."""
        points = [self.point(p) for p in structure["points"]]
        if "radius" in structure:
            return points, [self.value(structure["radius"])] * len(points)
        return points, [self.value(r) for r in structure["radii"]]


def _descending_aorta(anatomy: ChestAnatomy, table: _PatientTable):
    """Control points and radii of the descending aorta: left of the spine, then in front of it below the left dome."""
    scale_xy = anatomy.scale_xy
    points = []
    for z in np.linspace(anatomy.z_arch_mm - 18.0 * anatomy.scale_z, table.references["below_scan_z"], 8):
        y, half_width, half_depth = _vertebral_body(anatomy, z)
        forward = np.clip((anatomy.z_dome_left_mm - z) / 80.0, 0.0, 1.0)
        points.append(
            (
                half_width + 8.0 * scale_xy - 12.0 * scale_xy * forward,
                y - 0.45 * half_depth - (half_depth + 8.0) * forward,
                z,
            )
        )
    aortic_radius = table.references["aortic_radius"]
    return points, list(np.linspace(aortic_radius * 0.82, aortic_radius * 0.7, len(points)))


class _LobarBronchus(NamedTuple):
    start: np.ndarray
    end: np.ndarray  # at the lobe's hilum
    lumen_radius: float
    tree_direction: np.ndarray
    lung: int  # 1 right, 2 left


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------


@dataclass
class Network:
    """Tubes of one anatomy, drawn after the slices: margins first, then the groups in order."""

    margins: list[TubeSet]  # fat around mediastinal vessels and airways
    groups: list[TubeSet]
    hila: np.ndarray  # (n, 3) hilar points, for keeping lesions away


_MED_ALLOWED = (Label.FAT, Label.LUNG, Label.MUSCLE, Label.MEDIASTINUM, Label.SOFT_TISSUE)


def _airway_wall(lumen_radius: float) -> float:
    return lumen_radius + max(1.0, 0.25 * lumen_radius)


def _links(links: list[tuple[np.ndarray, np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Straight pieces ``(start, end, radius)`` as the arrays ``p0, p1, r0, r1`` of a TubeSet."""
    radii = np.array([radius for _, _, radius in links])
    return np.array([start for start, _, _ in links]), np.array([end for _, end, _ in links]), radii, radii.copy()


@functools.lru_cache(maxsize=8)
def network(anatomy: ChestAnatomy) -> Network:
    """Airways, great vessels and pulmonary trees of one anatomy (deterministic).

    Every random draw comes from the anatomy's ``tree_seed``, in a fixed
    order: the table's radii and landmarks, the lymph nodes, the bronchial
    trees, then the vascular trees.
    """
    rng = np.random.default_rng(anatomy.tree_seed)
    table = _PatientTable(anatomy, rng)
    vessels = {name: table.curve(structure) for name, structure in _structures(_TABLE["mediastinal_vessels"]).items()}
    aorta_points, aorta_radii = vessels["aorta"]
    descending_points, descending_radii = _descending_aorta(anatomy, table)
    vessels["aorta"] = (aorta_points + descending_points, aorta_radii + descending_radii)
    lobar = [
        _LobarBronchus(
            table.landmarks[bronchus["from"]],
            table.point(bronchus["to"]),
            table.value(bronchus["radius"]),
            np.asarray(bronchus["tree_direction"], float),
            _LUNG_CODES[bronchus["lung"]],
        )
        for bronchus in _structures(_TABLE["lobar_bronchi"]).values()
    ]
    airways = [table.curve(structure) for structure in _structures(_TABLE["central_airways"]).values()]
    airways += [([b.start, b.end], [b.lumen_radius, b.lumen_radius]) for b in lobar]
    margins, groups = _mediastinum(table, list(vessels.values()), airways, rng)
    domain = LungDomain(anatomy)
    groups += _bronchial_trees(rng, domain, lobar)
    groups += _vascular_trees(rng, domain, table, vessels)
    hila = np.array([table.landmarks[name] for name in _TABLE["hila"]])
    return Network(margins=margins, groups=groups, hila=hila)


def _mediastinum(table: _PatientTable, vessels, airways, rng: np.random.Generator):
    """Great vessels (VESSEL, in fat), oesophagus, lymph nodes, airways (MEDIASTINUM wall, AIRWAY lumen), clavicles."""
    airway_walls = [(points, [_airway_wall(r) for r in radii]) for points, radii in airways]
    margins = [
        # Vessels in the neck and upper mediastinum run in fat, which shows them on non-contrast CT.
        polyline_tubes(vessels, Label.FAT, (Label.LUNG, Label.MUSCLE), extra_radius=3.0),
        polyline_tubes(airway_walls, Label.FAT, (Label.LUNG,), extra_radius=3.0),
    ]
    groups = [
        polyline_tubes(vessels, Label.VESSEL, _MED_ALLOWED),
        polyline_tubes(
            [table.curve(_TABLE["oesophagus"])], Label.MEDIASTINUM, (Label.FAT, Label.LUNG, Label.MUSCLE, Label.SOFT_TISSUE)
        ),
    ]
    nodes = _TABLE["lymph_nodes"]
    centres = np.array([table.point(p) for p in nodes["centres"]])
    centres = centres + rng.normal(0.0, nodes["jitter_mm"], centres.shape)
    low, high = nodes["radius_mm"]
    radii = rng.uniform(low, high, len(centres))
    ends = centres + rng.normal(0.0, 1.0, centres.shape) * radii[:, None]
    groups.append(TubeSet(centres, ends, radii, radii * 0.9, int(Label.MEDIASTINUM), (Label.FAT,)))
    groups.append(polyline_tubes(airway_walls, Label.MEDIASTINUM, (*_MED_ALLOWED, Label.VESSEL)))
    groups.append(polyline_tubes(airways, Label.AIRWAY, (*_MED_ALLOWED, Label.VESSEL)))
    clavicles = [table.curve(structure) for structure in _structures(_TABLE["clavicles"]).values()]
    groups.append(polyline_tubes(clavicles, Label.RIB, (Label.MUSCLE, Label.FAT, Label.SOFT_TISSUE)))
    return margins, groups


def _bronchial_trees(rng: np.random.Generator, domain: LungDomain, lobar: list[_LobarBronchus]) -> list[TubeSet]:
    """A tree from the end of each lobar bronchus, joined to it by a straight piece: wall, then lumen."""
    links, roots = [], []
    for bronchus in lobar:
        start = _snap_into_lung(domain, bronchus.end, bronchus.tree_direction, bronchus.lung, _airway_wall(bronchus.lumen_radius))
        if start is not None:
            links.append((np.asarray(bronchus.end, float), start, bronchus.lumen_radius))
            roots.append((start, bronchus.tree_direction, bronchus.lumen_radius, bronchus.lung))
    p0, p1, r0, r1 = _grow_tree(rng, domain, roots, r_min=1.0, length_ratio=(4.0, 7.0), taper=0.95)
    if links:
        l0, l1, lr0, lr1 = _links(links)
        p0, p1, r0, r1 = np.vstack([p0, l0]), np.vstack([p1, l1]), np.concatenate([r0, lr0]), np.concatenate([r1, lr1])
    wall_r0 = r0 + np.maximum(0.5, 0.22 * r0)
    wall_r1 = r1 + np.maximum(0.5, 0.22 * r1)
    return [
        TubeSet(p0, p1, wall_r0, wall_r1, int(Label.SOFT_TISSUE), (Label.LUNG,)),
        TubeSet(p0, p1, r0, r1, int(Label.AIRWAY), (Label.LUNG, Label.SOFT_TISSUE)),
    ]


def _vascular_trees(rng: np.random.Generator, domain: LungDomain, table: _PatientTable, vessels: dict) -> list[TubeSet]:
    """Segmental arteries from each hilum, segmental veins draining to the four pulmonary veins."""
    roots = []
    for root in _TABLE["segmental_arteries"]["roots"]:
        radius = table.value(root["radius"])
        right = np.asarray(root["direction"], float)
        roots.append((table.landmarks["right_hilum"], right, radius, _LUNG_CODES["right"]))
        roots.append((table.landmarks["left_hilum"], right * [-1.0, 1.0, 1.0], radius, _LUNG_CODES["left"]))
    for vein, drained in _structures(_TABLE["segmental_veins"]).items():
        lung_end = np.asarray(vessels[vein][0][-1], float)
        for root in drained["roots"]:
            direction = np.asarray(root["direction"], float)
            roots.append((lung_end, direction, table.value(root["radius"]), _LUNG_CODES[drained["lung"]]))
    links, tree_roots = [], []
    for start, direction, radius, lung in roots:
        direction = unit_vector(direction + rng.normal(0.0, 0.12, 3))
        snapped = _snap_into_lung(domain, start, direction, lung, radius)
        if snapped is not None:
            links.append((np.asarray(start, float), snapped, radius))
            tree_roots.append((snapped, direction, radius, lung))
    p0, p1, r0, r1 = _grow_tree(rng, domain, tree_roots, r_min=0.55, length_ratio=(5.0, 9.0), taper=0.98)
    groups = [TubeSet(*_links(links), int(Label.VESSEL), (Label.LUNG, Label.FAT))] if links else []
    return [*groups, TubeSet(p0, p1, r0, r1, int(Label.VESSEL), (Label.LUNG,))]
