"""The scene model (receptacles, objects, the scene of one floor plan), AI2-THOR-style object ids, and
:func:`load_scene`, which rebuilds a floor plan's static scene (receptacles with poses, fixed scenery)
from its layout files, deterministically per floor plan."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from act_pipeline.envs.alfworld import AlfworldDataError
from act_pipeline.envs.alfworld_gen.layouts import _layouts_dir, _read_json, room_of
from act_pipeline.envs.alfworld_gen.tables import (
    FIXED,
    FIXED_HOLDERS,
    GRID,
    MAX_FIXED_PER_TYPE,
    MAX_RECEPTACLES,
    ON_COUNTER,
    PICKUPABLE,
    SYNTH_HEIGHT,
    _constants,
)


@dataclass
class Recep:
    id: str  # raw AI2-THOR id, e.g. "Cabinet|+00.65|+00.48|+00.24" or "Sink|...|SinkBasin"
    type: str
    pos: tuple[float, float, float]
    loc: tuple[int, int, int, int]  # grid x, grid z, rotation 0-3, horizon


@dataclass
class Obj:
    id: str
    type: str
    pos: tuple[float, float, float]
    loc: tuple[int, int, int, int]
    recep: str | None = None  # raw receptacle id


@dataclass
class Scene:
    fp: int
    room: str
    types: list[str]  # objects.json order
    receps: list[Recep]
    fixed: list[Obj]
    points: list[tuple[int, int]]  # reachable grid points
    pickup_types: list[str] = field(default_factory=list)  # present and placeable somewhere

    def recep_types(self) -> set[str]:
        return {r.type for r in self.receps}

    def holders(self, otype: str) -> list[Recep]:
        C = _constants()
        return [r for r in self.receps if otype in C.VAL_RECEPTACLE_OBJECTS.get(r.type, ())]


def _fmt(v: float) -> str:
    return f"{v:+06.2f}"


def _pid(otype: str, pos: tuple[float, float, float], suffix: str = "") -> str:
    """An AI2-THOR-style id: type and position, with the basin type after a sink's or bathtub's id.

    >>> _pid("Mug", (0.5, 0.9, -1.25))
    'Mug|+00.50|+00.90|-01.25'
    >>> _pid("Sink", (-1.0, 0.9, 2.0), "SinkBasin")
    'Sink|-01.00|+00.90|+02.00|SinkBasin'
    """
    return f"{otype}|{_fmt(pos[0])}|{_fmt(pos[1])}|{_fmt(pos[2])}" + (f"|{suffix}" if suffix else "")


def load_scene(fp: int) -> Scene:
    """The static part of a floor plan: receptacles (with poses) and fixed scenery.

    Deterministic per floor plan (independent of the generation seed), so that every game on a floor
    plan shows the same room, as in ALFWorld.
    """
    import numpy as np

    C = _constants()
    d = _layouts_dir()
    types = _read_json(d / f"FloorPlan{fp}-objects.json")
    openable = _read_json(d / f"FloorPlan{fp}-openable.json")
    npy = d / f"FloorPlan{fp}-layout.npy"
    if not npy.is_file():
        raise AlfworldDataError(f"{npy}: layout file is missing")
    try:
        pts = np.load(npy)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for a bad file
        raise AlfworldDataError(f"{npy}: corrupt layout file ({e})") from None
    points = sorted({(int(round(x / GRID)), int(round(z / GRID))) for x, z in pts.tolist()})
    if not points or not isinstance(types, list) or not isinstance(openable, dict):
        raise AlfworldDataError(f"FloorPlan{fp}: layout files in {d} are empty or malformed")
    rng = random.Random(f"alfworld_gen-scene-{fp}")
    static = C.RECEPTACLES - C.MOVABLE_RECEPTACLES_SET
    receps: list[Recep] = []
    for rid in sorted(openable):
        parts = rid.split("|")
        rtype = parts[-1] if len(parts) == 5 else parts[0]  # Sink|x|y|z|SinkBasin
        if rtype not in static or len(parts) not in (4, 5):
            continue
        x, z, rot, hor = openable[rid]
        pos = tuple(float(v) for v in parts[1:4])
        receps.append(Recep(rid, rtype, pos, (int(round(x / GRID)), int(round(z / GRID)),
                                              int(round(rot / 90)) % 4, int(hor))))
    taken = {r.id for r in receps}

    def pose_near(base: tuple[int, int] | None = None, rot: int | None = None) -> tuple[tuple, tuple]:
        gx, gz = base if base is not None else points[rng.randrange(len(points))]
        rot = rng.randrange(4) if rot is None else rot
        dist = rng.choice((2, 3, 4)) * GRID
        dx, dz = {0: (0, dist), 1: (dist, 0), 2: (0, -dist), 3: (-dist, 0)}[rot]
        return (gx * GRID + dx + rng.uniform(-0.2, 0.2), gz * GRID + dz + rng.uniform(-0.2, 0.2)), rot

    # receptacle types the scene has but the layout gives no precomputed pose for
    present = [t for t in types if t in static or t in ("Sink", "Bathtub")]
    want = []
    for t in dict.fromkeys(present):
        rt = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}.get(t, t)
        if rt in static and rt not in {r.type for r in receps} and rt not in want:
            want.append(rt)
    counters = [r for r in receps if r.type == "CounterTop"]
    for rt in want:
        n = 2 if rt == "StoveBurner" else 1
        if rt in ON_COUNTER and counters:
            c = counters[rng.randrange(len(counters))]
            shift = rng.choice((-1, 1))
            gx, gz, rot, hor = c.loc
            cand = (gx + shift, gz) if rot in (0, 2) else (gx, gz + shift)
            base = cand if cand in points else (gx, gz)
            (px, pz), rot = pose_near(base, rot)
            loc = (base[0], base[1], rot, 45)
        else:
            base = points[rng.randrange(len(points))]
            (px, pz), rot = pose_near(base)
            loc = (base[0], base[1], rot, 0 if SYNTH_HEIGHT.get(rt, 0.5) > 1.2 else 30)
        for k in range(n):
            pos = (round(px + 0.24 * k, 2), SYNTH_HEIGHT.get(rt, 0.5), round(pz, 2))
            owner = {"SinkBasin": "Sink", "BathtubBasin": "Bathtub"}.get(rt)
            rid = _pid(owner, pos, rt) if owner else _pid(rt, pos)
            if rid in taken:
                continue
            taken.add(rid)
            receps.append(Recep(rid, rt, pos, loc))
    # cap: drop surplus instances of the most numerous types (drawers, cabinets, shelves)
    while len(receps) > MAX_RECEPTACLES:
        counts: dict[str, int] = {}
        for r in receps:
            counts[r.type] = counts.get(r.type, 0) + 1
        big = max(sorted(counts), key=lambda t: counts[t])
        if counts[big] <= 1:
            break
        victims = [r for r in receps if r.type == big]
        receps.remove(victims[rng.randrange(len(victims))])
    receps.sort(key=lambda r: r.id)

    # fixed scenery
    fixed: list[Obj] = []
    used_ids: set[str] = set(taken)

    def add_fixed(otype: str, pos, loc, recep=None):
        oid = _pid(otype, pos)
        while oid in used_ids:
            pos = (round(pos[0] + 0.01, 2), pos[1], pos[2])
            oid = _pid(otype, pos)
        used_ids.add(oid)
        fixed.append(Obj(oid, otype, pos, loc, recep))

    for r in receps:  # the sink / bathtub object that owns each basin
        if r.type in ("SinkBasin", "BathtubBasin"):
            add_fixed(r.id.split("|")[0], r.pos, r.loc)
    for otype in dict.fromkeys(types):
        if otype not in FIXED or otype not in C.OBJECTS_SET:
            continue
        holders_ = [r for r in receps if r.type in FIXED_HOLDERS.get(otype, ())]
        if otype in FIXED_HOLDERS:
            if not holders_ and otype == "DeskLamp":
                continue  # a lamp that is on nothing cannot be toggled by the planner
            n = 1
        else:
            n = rng.randint(1, MAX_FIXED_PER_TYPE if otype in ("Window", "Chair", "StoveKnob") else 1)
        for _ in range(n):
            if holders_:
                r = holders_[rng.randrange(len(holders_))]
                pos = (round(r.pos[0] + rng.uniform(-0.3, 0.3), 2), round(r.pos[1] + 0.05, 2),
                       round(r.pos[2] + rng.uniform(-0.3, 0.3), 2))
                add_fixed(otype, pos, r.loc, r.id)
            else:
                base = points[rng.randrange(len(points))]
                (px, pz), rot = pose_near(base)
                y = {"LightSwitch": 1.3, "Window": 1.4, "Painting": 1.6, "Mirror": 1.5, "Blinds": 2.1,
                     "Poster": 1.6, "Curtains": 1.9, "StoveKnob": 0.9, "Chair": 0.0, "FloorLamp": 0.0,
                     "ShowerDoor": 1.0, "ShowerGlass": 1.0, "Television": 1.0, "HousePlant": 0.0,
                     "LaundryHamperLid": 0.5}.get(otype, 0.5)
                hor = 0 if y > 1.2 else 30 if y > 0.5 else 60
                add_fixed(otype, (round(px, 2), y, round(pz, 2)), (base[0], base[1], rot, hor))
    scene = Scene(fp, room_of(fp), list(types), receps, fixed, points)
    scene.pickup_types = [t for t in dict.fromkeys(types)
                          if t in PICKUPABLE and t in C.OBJECTS_SET and scene.holders(t)]
    return scene
