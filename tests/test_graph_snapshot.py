"""The asset graph is a contract: keys, dependencies, groups, checks and code-version inputs.

An accidental change fails here. After an intended change, regenerate the snapshot with
``UPDATE_SNAPSHOTS=1 scripts/test.sh tests/test_graph_snapshot.py`` (that run fails on purpose,
saying the file was rewritten), review the diff, commit it and rerun.
"""

import json
import os
from pathlib import Path

import pytest

from act_pipeline.config import REPO_ROOT
from act_pipeline.definitions import make_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _graph() -> dict:
    defs = make_definitions(str(REPO_ROOT / "configs" / "default.yaml"), "/nonexistent-data-root")
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "checks": sorted(c.name for c in graph.asset_check_keys if c.asset_key == key),
            "blocking_checks": sorted(c.name for c in graph.asset_check_keys
                                      if c.asset_key == key and graph.get_check_spec(c).blocking),
            "automation": str(node.automation_condition) if node.automation_condition else None,
            "has_code_version": node.code_version is not None,
        }
    jobs = sorted(j.name for j in defs.jobs or [])
    schedules = sorted(s.name for s in defs.schedules or [])
    sensors = sorted(s.name for s in defs.sensors or [])
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_asset_graph_matches_snapshot():
    current = _graph()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        # a run that rewrites the contract never counts as passing it
        pytest.fail(f"{SNAPSHOT} rewritten (UPDATE_SNAPSHOTS=1): review the diff, commit it, rerun without")
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: generate it with UPDATE_SNAPSHOTS=1"
    assert current == json.loads(SNAPSHOT.read_text())


def test_every_asset_has_a_code_version():
    assert all(a["has_code_version"] for a in _graph()["assets"].values())
