"""Tasks (goals): the :class:`Task` of a game (task type, target object, goal receptacle or lamp) and
:func:`candidate_tasks`, every task of one of the six task types that a scene supports."""

from __future__ import annotations

from dataclasses import dataclass

from act_pipeline.envs.alfworld_gen.scene import Recep, Scene
from act_pipeline.envs.alfworld_gen.tables import ALLOWED_PARENTS, STATE_OBJECTS, TASK_ROOMS, _constants


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
