"""The floor-plan layout files shipped in the alfworld wheel (``alfworld/gen/layouts``): where they are,
which floor plans are complete, the default held-out (unseen) floor plans, the room type of a floor plan,
and reading a layout JSON file with a clear error."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from act_pipeline.envs.alfworld import AlfworldDataError
from act_pipeline.envs.alfworld_gen.tables import ALFRED_UNSEEN_SCENES, ROOMS


def _layouts_dir() -> Path:
    try:
        from act_pipeline.envs.alfworld import import_alfworld

        import_alfworld()
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


def _read_json(path: Path):
    if not path.is_file():
        raise AlfworldDataError(f"{path}: layout file is missing")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AlfworldDataError(f"{path}: corrupt layout file ({e})") from None
