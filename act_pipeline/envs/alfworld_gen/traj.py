"""``traj_data.json`` content: :func:`traj_data` (task id, type, PDDL parameters, scene) and the
template-written task descriptions (:func:`annotations`) that stand in for ``turk_annotations``."""

from __future__ import annotations

import re

from act_pipeline.envs.alfworld_gen.draft import GameDraft
from act_pipeline.envs.alfworld_gen.tables import IN_PREP
from act_pipeline.envs.alfworld_gen.tasks import Task


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
