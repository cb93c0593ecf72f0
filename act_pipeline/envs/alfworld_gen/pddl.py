"""PDDL problem text: :func:`render_pddl` writes a drafted game's ``initial_state.pddl`` in the layout of
the released ``json_2.1.1`` games, with ids and locations mangled as ALFWorld's planner expects."""

from __future__ import annotations

from act_pipeline.envs.alfworld_gen.draft import GameDraft
from act_pipeline.envs.alfworld_gen.tables import PICKUPABLE, _constants


def _mangle(name: str) -> str:
    """PlannedGameState.fix_pddl_str_chars for ids (no '#' in ids).

    >>> _mangle("Mug|+00.50|+00.90|-01.25")
    'Mug_bar__plus_00_dot_50_bar__plus_00_dot_90_bar__minus_01_dot_25'
    """
    return (name.replace("-", "_minus_").replace("|", "_bar_").replace("+", "_plus_")
            .replace(".", "_dot_").replace(",", "_comma_"))


def _locname(loc: tuple[int, int, int, int]) -> str:
    """The PDDL name of an agent pose (grid x, grid z, rotation, horizon).

    >>> _locname((3, -2, 1, 30))
    'loc_bar_3_bar__minus_2_bar_1_bar_30'
    """
    return _mangle("loc|%d|%d|%d|%d" % loc)


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
