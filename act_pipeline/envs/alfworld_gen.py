"""Generate new ALFWorld text games offline, without AI2-THOR.

The ALFWorld wheel ships, for each of the 120 AI2-THOR floor plans (kitchens 1-30, living rooms
201-230, bedrooms 301-330, bathrooms 401-430), three layout files under ``alfworld/gen/layouts``:

* ``FloorPlanN-objects.json``  - the object and receptacle *types* present in the scene;
* ``FloorPlanN-openable.json`` - receptacle instances (``Type|+x.xx|+y.yy|+z.zz``) with the agent
  pose from which each is reached (``[x, z, rotation_degrees, horizon]``);
* ``FloorPlanN-layout.npy``    - the reachable floor points (metres, 0.25 m grid).

From these we rebuild what the original ALFRED/ALFWorld generator got from the simulator: a PDDL
problem (``initial_state.pddl``) in the exact format of the released ``json_2.1.1`` games, a trimmed
``traj_data.json``, and ``game.tw-pddl`` (built with :func:`act_pipeline.envs.alfworld.build_game`
from the installed alfworld domain and grammar). Object instances are placed with the same
``canContain`` table the original generator used (``alfworld.gen.constants.VAL_RECEPTACLE_OBJECTS``);
goals come from ``alfworld.gen.goal_library``. A game is kept only when the PDDL planner expert
solves it in the text engine; its walkthrough is recorded in ``game.tw-pddl``.

What is approximated (no simulator): object positions (ids) are sampled near their receptacle,
receptacle types that the layout files list without a precomputed pose (GarbageCan, StoveBurner,
Toaster, CoffeeMachine, towel holders, ...) get a pose on a sampled floor point, fixed scenery
(windows, light switches, ...) gets a sampled location, and ``turk_annotations`` are written from
templates, not by people. Not generated: ``look_at_obj_in_light`` with a FloorLamp (the planner can
only toggle a lamp that is in a receptacle), sliced objects and movable-receptacle tasks (the text
engine does not support them either). Scenes are capped (``MAX_RECEPTACLES``,
``MAX_PICKUP_OBJECTS``) so that a planner reset takes ~1-5 s; ``pick_two_obj_and_place`` games in
large kitchens can still take ~10-30 s to plan.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from act_pipeline.envs.alfworld import SPLITS, TASK_TYPES, AlfworldDataError, AlfworldGame, build_game

GRID = 0.25  # AI2-THOR agent step (constants.AGENT_STEP_SIZE)
MAX_PICKUP_OBJECTS = 20  # pickupable object instances per game (keeps planner resets ~1-5 s)
MAX_PICKUP_OBJECTS_TWO = 14  # pick_two_obj_and_place: the planner's search grows fastest there
MAX_RECEPTACLES = 20  # receptacle instances per scene (released games: median 22, up to 54)
MAX_FIXED_PER_TYPE = 2  # windows, chairs, light switches, ... per type
MAX_STEPS = 50  # expert steps allowed when checking a game
MAX_ATTEMPTS = 40  # sampled games per kept game before giving up
MANIFEST = "generation.json"

# ALFRED's test floor plans that back the official valid_unseen split; always held out by default so
# generated train games never overlap the real out-of-distribution set.
ALFRED_UNSEEN_SCENES = (10, 219, 308, 424)

ROOMS = {"Kitchen": range(1, 31), "LivingRoom": range(201, 231), "Bedroom": range(301, 331),
         "Bathroom": range(401, 431)}
# which room types a task can be generated in (alfworld.gen.constants.GOALS_VALID)
TASK_ROOMS = {
    "pick_and_place_simple": {"Kitchen", "LivingRoom", "Bathroom", "Bedroom"},
    "pick_two_obj_and_place": {"Kitchen", "LivingRoom", "Bathroom", "Bedroom"},
    "look_at_obj_in_light": {"LivingRoom", "Bedroom"},
    "pick_clean_then_place_in_recep": {"Kitchen", "Bathroom"},
    "pick_heat_then_place_in_recep": {"Kitchen"},
    "pick_cool_then_place_in_recep": {"Kitchen"},
}
# goal receptacle types per task type: those the released json_2.1.1 games use (the state-changing
# appliance itself is never the goal: no heat -> Microwave, cool -> Fridge, clean -> SinkBasin)
_PLACE_PARENTS = """ArmChair Bed Cabinet Cart CoffeeTable CounterTop Desk DiningTable Drawer Dresser GarbageCan
Ottoman Safe Shelf SideTable Sofa Toilet""".split()
ALLOWED_PARENTS = {
    "pick_and_place_simple": frozenset(_PLACE_PARENTS + ["Microwave", "ToiletPaperHanger"]),
    "pick_two_obj_and_place": frozenset(_PLACE_PARENTS),
    "pick_clean_then_place_in_recep": frozenset("""Cabinet Cart CoffeeMachine CounterTop DiningTable Drawer
        Fridge GarbageCan Microwave Shelf SideTable StoveBurner Toilet""".split()),
    "pick_heat_then_place_in_recep": frozenset("""Cabinet CoffeeMachine CounterTop DiningTable Fridge
        GarbageCan Shelf SideTable""".split()),
    "pick_cool_then_place_in_recep": frozenset("""Cabinet CoffeeMachine CounterTop DiningTable GarbageCan
        Microwave Shelf SideTable StoveBurner""".split()),
}
# target objects of the state-change tasks in the released games (whole objects only: no slicing)
STATE_OBJECTS = {
    "pick_clean_then_place_in_recep": ("SinkBasin", frozenset("""Apple Bowl ButterKnife Cloth Cup DishSponge
        Egg Fork Kettle Knife Ladle Lettuce Mug Pan Plate Pot Potato SoapBar Spatula Spoon Tomato""".split())),
    "pick_heat_then_place_in_recep": ("Microwave", frozenset("Apple Cup Egg Mug Plate Potato Tomato".split())),
    "pick_cool_then_place_in_recep": ("Fridge", frozenset("""Apple Bowl Bread Cup Egg Lettuce Mug Pan Plate
        Pot Potato Tomato WineBottle""".split())),
}
# types that the released games mark `pickupable` (AI2-THOR metadata), collected from json_2.1.1
PICKUPABLE = frozenset("""
AlarmClock Apple BaseballBat BasketBall Book Boots Bowl Box Bread ButterKnife CD Candle CellPhone
Cloth CreditCard Cup DishSponge Egg Footstool Fork Glassbottle HandTowel Kettle KeyChain Knife Ladle
Laptop Lettuce Mug Newspaper Pan PaperTowelRoll Pen Pencil PepperShaker Pillow Plate Plunger Pot
Potato RemoteControl SaltShaker ScrubBrush SoapBar SoapBottle Spatula Spoon SprayBottle Statue
TeddyBear TennisRacket TissueBox ToiletPaper Tomato Towel Vase Watch WateringCan WineBottle
""".split())
# non-pickupable scenery; some of it sits in a receptacle in the released games
FIXED = frozenset("""
Blinds Chair Curtains DeskLamp FloorLamp HousePlant LaundryHamperLid LightSwitch Mirror Painting
Poster ShowerDoor ShowerGlass StoveKnob Television Window
""".split())
FIXED_HOLDERS = {  # receptacle types a fixed object is put on (released games' statistics)
    "DeskLamp": ("Desk", "SideTable", "Dresser", "Shelf"),
    "HousePlant": ("CounterTop", "SideTable", "DiningTable", "CoffeeTable", "Shelf", "Desk"),
    "Television": ("TVStand", "Dresser", "CoffeeTable"),
}
LAMP_HOLDERS = FIXED_HOLDERS["DeskLamp"]
# typical heights (m) of receptacles the layout files give no pose for
SYNTH_HEIGHT = {"GarbageCan": 0.0, "Toilet": 0.0, "LaundryHamper": 0.0, "Ottoman": 0.0, "Safe": 0.0,
                "StoveBurner": 0.92, "Toaster": 0.90, "CoffeeMachine": 0.90, "HandTowelHolder": 1.60,
                "TowelHolder": 1.10, "ToiletPaperHanger": 0.70, "Cabinet": 0.40, "Drawer": 0.50,
                "Shelf": 0.60, "SinkBasin": 0.90}
ON_COUNTER = {"StoveBurner", "Toaster", "CoffeeMachine"}
IN_PREP = {"Drawer", "Cabinet", "Fridge", "Microwave", "Safe", "GarbageCan", "SinkBasin",
           "BathtubBasin", "LaundryHamper", "Box"}


def _constants():
    import alfworld.gen.constants as C

    return C


def _layouts_dir() -> Path:
    try:
        import alfworld.gen as gen
    except ImportError as e:  # pragma: no cover - alfworld is a dependency
        raise AlfworldDataError(f"alfworld is not installed ({e}); it ships the layout files") from None
    d = Path(gen.__file__).parent / "layouts"
    if not d.is_dir():
        raise AlfworldDataError(f"{d}: alfworld layout folder is missing (reinstall alfworld==0.4.2)")
    return d


def available_floorplans() -> list[int]:
    """Floor plans whose three layout files are all present, sorted."""
    d = _layouts_dir()
    out = []
    for f in d.glob("FloorPlan*-objects.json"):
        m = re.fullmatch(r"FloorPlan(\d+)-objects\.json", f.name)
        if m and all((d / f"FloorPlan{m.group(1)}-{s}").is_file() for s in ("openable.json", "layout.npy")):
            out.append(int(m.group(1)))
    if not out:
        raise AlfworldDataError(f"{d}: no FloorPlanN-objects.json / -openable.json / -layout.npy files")
    return sorted(out)


def default_unseen_floorplans(available: Sequence[int]) -> list[int]:
    """Every 5th floor plan of each room type (5, 10, ..., 205, ...) plus ALFRED's unseen scenes."""
    return sorted({n for n in available if n % 5 == 0 or n in ALFRED_UNSEEN_SCENES})


def room_of(fp: int) -> str:
    for room, rng in ROOMS.items():
        if fp in rng:
            return room
    return "Unknown"


# ---------------------------------------------------------------------------------------------
# scene model


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
    return f"{otype}|{_fmt(pos[0])}|{_fmt(pos[1])}|{_fmt(pos[2])}" + (f"|{suffix}" if suffix else "")


def _mangle(name: str) -> str:
    """PlannedGameState.fix_pddl_str_chars for ids (no '#' in ids)."""
    return (name.replace("-", "_minus_").replace("|", "_bar_").replace("+", "_plus_")
            .replace(".", "_dot_").replace(",", "_comma_"))


def _locname(loc: tuple[int, int, int, int]) -> str:
    return _mangle("loc|%d|%d|%d|%d" % loc)


def _read_json(path: Path):
    if not path.is_file():
        raise AlfworldDataError(f"{path}: layout file is missing")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AlfworldDataError(f"{path}: corrupt layout file ({e})") from None


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


# ---------------------------------------------------------------------------------------------
# tasks


@dataclass
class Task:
    task_type: str
    obj: str
    parent: str = ""  # receptacle type ("" for look_at_obj_in_light)
    toggle: str = ""

    @property
    def folder(self) -> str:
        return f"{self.task_type}-{self.obj}-None-{self.parent or self.toggle}"


def _start_holders(scene: Scene, task: Task) -> list[Recep]:
    """Receptacles the target may start in: any that can hold it, but not one of the goal type."""
    return [r for r in scene.holders(task.obj) if r.type != task.parent]


def candidate_tasks(scene: Scene, task_type: str) -> list[Task]:
    """All (object, parent/toggle) combinations this scene supports for a task type (fixed order)."""
    C = _constants()
    if scene.room not in TASK_ROOMS[task_type]:
        return []
    rtypes = scene.recep_types()
    objs = scene.pickup_types
    out: list[Task] = []
    if task_type == "look_at_obj_in_light":
        if any(o.type == "DeskLamp" and o.recep for o in scene.fixed):
            out = [Task(task_type, o, "", "DeskLamp") for o in objs]
    else:
        if task_type in STATE_OBJECTS:
            appliance, allowed = STATE_OBJECTS[task_type]
            if appliance not in rtypes:
                return []
            objs = [o for o in objs if o in allowed]
        for o in objs:
            for rt in sorted(rtypes & ALLOWED_PARENTS[task_type]):
                if o in C.VAL_RECEPTACLE_OBJECTS.get(rt, ()):
                    out.append(Task(task_type, o, rt))
    return [t for t in out if _start_holders(scene, t)]


# ---------------------------------------------------------------------------------------------
# one game


@dataclass
class GameDraft:
    scene: Scene
    task: Task
    objects: list[Obj]
    agent: tuple[int, int, int, int]
    task_id: str


def _capacity(rtype: str) -> int:
    return {"Microwave": 2, "CoffeeMachine": 1, "StoveBurner": 1, "Toaster": 0, "Safe": 3,
            "ToiletPaperHanger": 1, "HandTowelHolder": 1, "TowelHolder": 1}.get(rtype, 5)


def place_objects(scene: Scene, task: Task, rng: random.Random) -> list[Obj] | None:
    n_target = rng.randint(2, 3) if task.task_type == "pick_two_obj_and_place" else rng.randint(1, 3)
    others = [t for t in scene.pickup_types if t != task.obj]
    rng.shuffle(others)
    cap = MAX_PICKUP_OBJECTS_TWO if task.task_type == "pick_two_obj_and_place" else MAX_PICKUP_OBJECTS
    counts = [(task.obj, n_target)]
    total = n_target
    for t in others:
        if total >= cap:
            break
        k = min(rng.randint(1, 2), cap - total)
        counts.append((t, k))
        total += k
    load = {r.id: sum(1 for o in scene.fixed if o.recep == r.id) for r in scene.receps}
    used = {r.id for r in scene.receps} | {o.id for o in scene.fixed}
    objs: list[Obj] = []
    for otype, k in counts:
        if otype == task.obj:
            hold = _start_holders(scene, task)
        else:
            hold = scene.holders(otype)
        for _ in range(k):
            free = [r for r in hold if load[r.id] < _capacity(r.type)]
            if not free:
                break
            weights = [0.3 if r.type == "GarbageCan" else 1.0 for r in free]
            r = rng.choices(free, weights=weights)[0]
            load[r.id] += 1
            for _try in range(20):
                pos = (round(r.pos[0] + rng.uniform(-0.35, 0.35), 2),
                       round(r.pos[1] + rng.uniform(0.0, 0.15), 2),
                       round(r.pos[2] + rng.uniform(-0.35, 0.35), 2))
                oid = _pid(otype, pos)
                if oid not in used:
                    break
            else:
                continue
            used.add(oid)
            objs.append(Obj(oid, otype, pos, r.loc, r.id))
    n_t = sum(1 for o in objs if o.type == task.obj)
    if n_t < (2 if task.task_type == "pick_two_obj_and_place" else 1):
        return None
    if task.parent:  # the goal must not hold at the start
        parents = {r.id for r in scene.receps if r.type == task.parent}
        if any(o.type == task.obj and o.recep in parents for o in objs):
            return None
    return objs


def _trial_id(rng: random.Random) -> str:
    return "trial_T2019%02d%02d_%02d%02d%02d_%06d" % (
        rng.randint(5, 9), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
        rng.randint(0, 59), rng.randint(0, 999999))


def draft_game(scene: Scene, task: Task, rng: random.Random) -> GameDraft | None:
    objs = place_objects(scene, task, rng)
    if objs is None:
        return None
    # start "in the middle of a room", not facing a receptacle (the intro then lists no receptacles,
    # which the released games never do and alfworld's handcoded expert cannot handle)
    busy = {r.loc for r in scene.receps}
    for _ in range(100):
        gx, gz = scene.points[rng.randrange(len(scene.points))]
        agent = (gx, gz, rng.randrange(4), 30)
        if agent not in busy:
            break
    else:
        return None
    return GameDraft(scene, task, objs, agent, _trial_id(rng))


def render_pddl(g: GameDraft) -> str:
    """initial_state.pddl in the layout of the released json_2.1.1 games."""
    C = _constants()
    from alfworld.gen.goal_library import gdict

    scene, task = g.scene, g.task
    static = sorted(C.RECEPTACLES - C.MOVABLE_RECEPTACLES_SET)
    header_objs = sorted(C.OBJECTS_SET - set(static))
    objects = sorted(scene.fixed + g.objects, key=lambda o: o.id)
    receps = scene.receps  # sorted by id
    locs: list[tuple] = []
    for loc in [r.loc for r in receps] + [o.loc for o in objects] + [g.agent]:
        if loc not in locs:
            locs.append(loc)
    present_otypes = list(dict.fromkeys(o.type for o in objects))

    def block(lines: list[str]) -> str:
        return "\n        ".join(lines)

    M = _mangle
    obj_lines = [f"{M(o.id)} - object" for o in objects]
    rec_lines = [f"{M(r.id)} - receptacle" for r in receps]
    loc_lines = [f"{_locname(loc)} - location" for loc in locs]
    cancontain = [f"(canContain {r.type}Type {t}Type)" for r in receps for t in present_otypes
                  if t in C.VAL_RECEPTACLE_OBJECTS.get(r.type, ())]
    va = C.VAL_ACTION_OBJECTS
    sections = [
        block([f"(receptacleType {M(r.id)} {r.type}Type)" for r in receps]),
        block([f"(objectType {M(o.id)} {o.type}Type)" for o in objects]),
        block(cancontain),
        block([f"(pickupable {M(o.id)})" for o in objects if o.type in PICKUPABLE]),
        block([f"(isReceptacleObject {M(o.id)})" for o in objects if o.type in C.MOVABLE_RECEPTACLES_SET]),
        block([f"(openable {M(r.id)})" for r in receps if r.type in C.OPENABLE_CLASS_SET]),
        f"\n        (atLocation agent1 {_locname(g.agent)})",
        "",  # opened
        block([f"(cleanable {M(o.id)})" for o in objects if o.type in va["Cleanable"]]),
        "",  # isClean
        block([f"(heatable {M(o.id)})" for o in objects if o.type in va["Heatable"]]),
        block([f"(coolable {M(o.id)})" for o in objects if o.type in va["Coolable"]]),
        "",  # isHot
        # as the original generator: target objects that start in a fridge are already cool
        block([f"(isCool {M(o.id)})" for o in objects
               if o.type == task.obj and o.recep and o.recep.startswith("Fridge|")]),
        block([f"(toggleable {M(o.id)})" for o in objects if o.type in va["Toggleable"]]),
        "",  # isOn
        "",  # receptacle objects
        block([f"(sliceable {M(o.id)})" for o in objects if o.type in va["Sliceable"]]),
        "",  # isSliced
        block([f"(inReceptacle {M(o.id)} {M(o.recep)})" for o in objects if o.recep]),
        "",  # wasInReceptacle
        "",  # distances
        block([f"(receptacleAtLocation {M(r.id)} {_locname(r.loc)})" for r in receps]),
        block([f"(objectAtLocation {M(o.id)} {_locname(o.loc)})" for o in objects]),
    ]
    goal = gdict[task.task_type]["pddl"].format(obj=task.obj, recep=task.parent, toggle=task.toggle,
                                                mrecep="").replace("#", "-")
    return (
        f"\n(define (problem plan_{g.task_id})\n(:domain alfred)\n(:objects\nagent1 - agent\n"
        + block([f"{t} - object" for t in header_objs]) + "\n"
        + block([f"{t}Type - otype" for t in header_objs]) + "\n"
        + block([f"{t}Type - rtype" for t in static]) + "\n\n\n        "
        + block(obj_lines + rec_lines + loc_lines)
        + "\n        )\n    \n\n(:init\n\n\n        "
        + "\n        ".join(sections)
        + "\n        )\n    \n"
        + goal
    )


def _words(name: str) -> str:
    special = {"SinkBasin": "sink", "BathtubBasin": "bathtub", "CounterTop": "counter", "TVStand": "TV stand",
               "CD": "CD", "Glassbottle": "glass bottle", "KeyChain": "key chain"}
    if name in special:
        return special[name]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()


def _plural(words: str) -> str:
    if words.endswith("knife"):
        return words[:-2] + "ves"
    if words.endswith(("s", "x", "ch", "sh")):
        return words + "es"
    if words.endswith("y") and words[-2:-1] not in "aeiou":
        return words[:-1] + "ies"
    return words + "s"


def annotations(task: Task) -> list[str]:
    o = _words(task.obj)
    r = _words(task.parent) if task.parent else ""
    p = "in" if task.parent in IN_PREP else "on"
    a = "an" if o[0] in "aeiou" else "a"
    tt = task.task_type
    if tt == "pick_and_place_simple":
        return [f"Put {a} {o} {p} the {r}.", f"Move the {o} to the {r}.", f"Place {a} {o} {p} the {r}."]
    if tt == "pick_two_obj_and_place":
        os_ = _plural(o)
        return [f"Put two {os_} {p} the {r}.", f"Find two {os_} and place them {p} the {r}.",
                f"Move two {os_} to the {r}."]
    if tt == "look_at_obj_in_light":
        return [f"Examine the {o} under the desk lamp.", f"Turn on the desk lamp while holding the {o}.",
                f"Look at {a} {o} in the light of the lamp."]
    verb = {"pick_clean_then_place_in_recep": ("clean", "Rinse the {o} in the sink", "Wash"),
            "pick_heat_then_place_in_recep": ("hot", "Heat the {o} in the microwave", "Warm up"),
            "pick_cool_then_place_in_recep": ("cold", "Chill the {o} in the fridge", "Cool")}[tt]
    return [f"Put a {verb[0]} {o} {p} the {r}.", verb[1].format(o=o) + f" and put it {p} the {r}.",
            f"{verb[2]} {a} {o} and place it {p} the {r}."]


def traj_data(g: GameDraft) -> dict:
    t = g.task
    return {
        "task_id": g.task_id,
        "task_type": t.task_type,
        "pddl_params": {"mrecep_target": "", "object_sliced": False, "object_target": t.obj,
                        "parent_target": t.parent, "toggle_target": t.toggle},
        "scene": {"floor_plan": f"FloorPlan{g.scene.fp}", "scene_num": g.scene.fp},
        "turk_annotations": {"anns": [{"task_desc": d} for d in annotations(t)]},
    }


def solve(gamefile: Path, max_steps: int = MAX_STEPS) -> list[str] | None:
    """The planner expert's walkthrough if it wins within ``max_steps``, else None.

    No wall-clock limit: a time-based decision would make the output depend on machine load.
    """
    game = None
    try:
        game = AlfworldGame(gamefile, expert="planner")
        _, info = game.reset()
        if info["won"]:
            return None  # goal already true at the start: not a task
        walk: list[str] = []
        for _ in range(max_steps):
            action = info.get("expert_action")
            if not action or action == "look" and walk and walk[-1] == "look":
                return None
            _, done, info = game.step(action)
            walk.append(action)
            if done:
                break
        return walk if info["won"] else None
    except Exception:  # noqa: BLE001 - any planner/engine failure means "not solvable"
        return None
    finally:
        if game is not None:
            try:
                game.close()
            except Exception:  # noqa: BLE001
                pass


def _write_json(path: Path, data, **kw) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, **kw))
    os.replace(tmp, path)


def write_game(g: GameDraft, split_dir: Path, staging: Path, seed_token: str) -> Path:
    """Write one trial folder (initial_state.pddl, traj_data.json, game.tw-pddl); returns it."""
    trial = split_dir / f"{g.task.folder}-{g.scene.fp}" / g.task_id
    if trial.exists():
        raise FileExistsError(trial)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / "initial_state.pddl").write_text(render_pddl(g))
    (staging / "traj_data.json").write_text(json.dumps(traj_data(g), indent=4))
    # add_task_to_grammar picks the task template with the global `random`: pin it for determinism
    state = random.getstate()
    random.seed(seed_token)
    try:
        build_game(staging, trial)
    finally:
        random.setstate(state)
        shutil.rmtree(staging, ignore_errors=True)
    return trial


# ---------------------------------------------------------------------------------------------
# public entry point


def generate_games(out_dir: str | Path, n_per_split: int, seed: int = 0,
                   task_types: Sequence[str] = (), unseen_floorplans: Sequence[int] | None = None,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Write out_dir/json_2.1.1/{train,valid_seen,valid_unseen}/<task_type>-<Object>-<Mrecep>-<Parent>-<scene>/<trial>/
    with initial_state.pddl, traj_data.json and game.tw-pddl; return out_dir. Deterministic for a seed."""
    out_dir = Path(out_dir)
    say = progress or (lambda msg: None)
    if n_per_split < 0:
        raise ValueError(f"n_per_split must be >= 0, got {n_per_split}")
    types = list(dict.fromkeys(task_types)) or list(TASK_TYPES)
    bad = [t for t in types if t not in TASK_TYPES]
    if bad:
        raise ValueError(f"unknown task types {bad}; expected some of {TASK_TYPES}")

    available = available_floorplans()
    if unseen_floorplans is None:
        unseen = default_unseen_floorplans(available)
    else:
        unseen = sorted(set(int(n) for n in unseen_floorplans))
        d = _layouts_dir()
        for n in unseen:
            if n not in available:
                raise AlfworldDataError(f"{d / f'FloorPlan{n}-objects.json'}: layout files for unseen floor "
                                        f"plan {n} are missing (available: {available[0]}..{available[-1]})")
    seen = [n for n in available if n not in set(unseen)]
    if not unseen or not seen:
        raise AlfworldDataError(f"need floor plans for both seen and unseen splits (unseen={unseen})")
    pools = {"train": seen, "valid_seen": seen, "valid_unseen": unseen}

    final = out_dir / "json_2.1.1"
    if final.exists():
        if not (final / MANIFEST).is_file():
            raise AlfworldDataError(f"{final} exists and was not written by alfworld_gen; "
                                    "refusing to overwrite it (choose another out_dir)")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".json_2.1.1.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    staging = out_dir / ".alfworld_gen_staging"

    scenes: dict[int, Scene] = {}

    def scene(fp: int) -> Scene:
        if fp not in scenes:
            scenes[fp] = load_scene(fp)
        return scenes[fp]

    manifest = {"generator": "act_pipeline.envs.alfworld_gen", "seed": seed, "n_per_split": n_per_split,
                "task_types": types, "floorplans": {s: pools[s] for s in SPLITS}, "games": {}}
    stats = {"kept": 0, "attempts": 0, "seconds": 0.0}
    k = 0  # global round-robin index over task types, continued across splits
    for split in SPLITS:
        split_dir = work / split
        split_dir.mkdir()
        feasible = {}
        for tt in types:
            feasible[tt] = [fp for fp in pools[split] if candidate_tasks(scene(fp), tt)]
            if not feasible[tt]:
                say(f"[{split}] no floor plan supports {tt}; skipping that task type in this split")
        usable = [tt for tt in types if feasible[tt]]
        if n_per_split and not usable:
            raise AlfworldDataError(f"[{split}] none of the task types {types} can be generated on floor plans "
                                    f"{pools[split]}")
        games = []
        for j in range(n_per_split):
            tt = usable[k % len(usable)]
            k += 1
            t0 = time.perf_counter()
            for attempt in range(MAX_ATTEMPTS):
                rng = random.Random(f"alfworld_gen-{seed}-{split}-{j}-{attempt}")
                fp = feasible[tt][rng.randrange(len(feasible[tt]))]
                sc = scene(fp)
                cands = candidate_tasks(sc, tt)
                task = cands[rng.randrange(len(cands))]
                stats["attempts"] += 1
                g = draft_game(sc, task, rng)
                if g is None:
                    continue
                try:
                    trial = write_game(g, split_dir, staging, f"alfworld_gen-{seed}-{split}-{j}-grammar")
                except FileExistsError:
                    continue
                walk = solve(trial / "game.tw-pddl")
                if walk is None:
                    shutil.rmtree(trial)
                    if not any(trial.parent.iterdir()):
                        trial.parent.rmdir()
                    say(f"[{split}] {j + 1}/{n_per_split} {trial.parent.name}: not solved, retrying")
                    continue
                gf = trial / "game.tw-pddl"
                data = json.loads(gf.read_text())
                data["solvable"] = True
                data["walkthrough"] = walk
                _write_json(gf, data)
                dt = time.perf_counter() - t0
                stats["kept"] += 1
                stats["seconds"] += dt
                games.append({"game": f"{trial.parent.name}/{trial.name}", "attempts": attempt + 1,
                              "expert_steps": len(walk)})
                say(f"[{split}] {j + 1}/{n_per_split} {trial.parent.name}/{trial.name}: "
                    f"{len(walk)} expert steps, attempt {attempt + 1}, {dt:.1f}s")
                break
            else:
                raise AlfworldDataError(f"[{split}] could not generate a solvable {tt} game in {MAX_ATTEMPTS} "
                                        f"attempts (floor plans {feasible[tt]})")
        manifest["games"][split] = games
    _write_json(work / MANIFEST, manifest, indent=2)
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    if stats["kept"]:
        say(f"generated {stats['kept']} games in {stats['seconds']:.0f}s "
            f"({stats['attempts']} attempts, {stats['seconds'] / stats['kept']:.1f}s per game)")
    return out_dir
