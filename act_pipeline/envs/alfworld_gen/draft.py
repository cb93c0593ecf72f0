"""One game before it is written: a scene and a task plus sampled object instances (placed in receptacles
that can hold them, the goal not already true), the agent's start pose and a trial id (:func:`draft_game`)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from act_pipeline.envs.alfworld_gen.scene import Obj, Scene, _pid
from act_pipeline.envs.alfworld_gen.tables import MAX_PICKUP_OBJECTS, MAX_PICKUP_OBJECTS_TWO
from act_pipeline.envs.alfworld_gen.tasks import Task, _start_holders


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
