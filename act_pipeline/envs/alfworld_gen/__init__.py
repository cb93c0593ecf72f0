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

Modules (imports go one way, each only from those listed before it): ``tables`` (constants and type
tables), ``layouts`` (the wheel's layout files), ``scene`` (scene model, :func:`load_scene`), ``tasks``
(:class:`Task`, :func:`candidate_tasks`), ``draft`` (one game: object placement, agent start),
``pddl`` (``initial_state.pddl`` text), ``traj`` (``traj_data.json`` content) and ``generate``
(writing and checking games, :func:`generate_games`). This package re-exports their public names.
"""

from act_pipeline.envs.alfworld_gen.draft import GameDraft, draft_game, place_objects
from act_pipeline.envs.alfworld_gen.generate import generate_games, solve, write_game
from act_pipeline.envs.alfworld_gen.layouts import available_floorplans, default_unseen_floorplans, room_of
from act_pipeline.envs.alfworld_gen.pddl import render_pddl
from act_pipeline.envs.alfworld_gen.scene import Obj, Recep, Scene, load_scene
from act_pipeline.envs.alfworld_gen.tables import (
    ALFRED_UNSEEN_SCENES,
    ALLOWED_PARENTS,
    FIXED,
    FIXED_HOLDERS,
    GRID,
    IN_PREP,
    LAMP_HOLDERS,
    MANIFEST,
    MAX_ATTEMPTS,
    MAX_FIXED_PER_TYPE,
    MAX_PICKUP_OBJECTS,
    MAX_PICKUP_OBJECTS_TWO,
    MAX_RECEPTACLES,
    MAX_STEPS,
    ON_COUNTER,
    PICKUPABLE,
    ROOMS,
    STATE_OBJECTS,
    SYNTH_HEIGHT,
    TASK_ROOMS,
)
from act_pipeline.envs.alfworld_gen.tasks import Task, candidate_tasks
from act_pipeline.envs.alfworld_gen.traj import annotations, traj_data

__all__ = [
    "ALFRED_UNSEEN_SCENES", "ALLOWED_PARENTS", "FIXED", "FIXED_HOLDERS", "GRID", "IN_PREP", "LAMP_HOLDERS",
    "MANIFEST", "MAX_ATTEMPTS", "MAX_FIXED_PER_TYPE", "MAX_PICKUP_OBJECTS", "MAX_PICKUP_OBJECTS_TWO",
    "MAX_RECEPTACLES", "MAX_STEPS", "ON_COUNTER", "PICKUPABLE", "ROOMS", "STATE_OBJECTS", "SYNTH_HEIGHT",
    "TASK_ROOMS", "GameDraft", "Obj", "Recep", "Scene", "Task", "annotations", "available_floorplans",
    "candidate_tasks", "default_unseen_floorplans", "draft_game", "generate_games", "load_scene",
    "place_objects", "render_pddl", "room_of", "solve", "traj_data", "write_game",
]
