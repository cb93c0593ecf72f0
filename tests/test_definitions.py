"""Nothing is read at import: the graph is built from the profile it is given.

Two profiles in one process give two graphs whose code versions differ exactly where the
profiles' sections differ; importing the Dagster layer with ``ACT_PROFILE`` pointing nowhere
succeeds (the profile is read when Dagster loads the code location, not at import).
"""

import os
import subprocess
import sys

import dagster as dg
import yaml

from act_pipeline.config import REPO_ROOT
from act_pipeline.definitions import make_definitions

DEFAULT = REPO_ROOT / "configs" / "default.yaml"


def _versions(defs: dg.Definitions) -> dict[str, str]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string(): graph.get(k).code_version for k in graph.materializable_asset_keys}


def test_two_profiles_two_graphs_in_one_process(tmp_path):
    data = yaml.safe_load(DEFAULT.read_text())
    data["eval"] = {**(data.get("eval") or {}), "heldout_states": 7}  # only the eval section differs
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    a = _versions(make_definitions(str(DEFAULT), str(tmp_path / "a")))
    b = _versions(make_definitions(str(other), str(tmp_path / "b")))
    assert a.keys() == b.keys()
    changed = {k for k in a if a[k] != b[k]}
    # the only assets the eval section parameterises: each benchmark's evaluation
    assert changed == {"alfworld/evaluation", "scienceworld/evaluation"}, changed
    # and a third build from the first profile is the first graph again (no state kept between builds)
    assert _versions(make_definitions(str(DEFAULT), str(tmp_path / "c"))) == a


def test_each_build_has_its_own_resources(tmp_path):
    data = yaml.safe_load(DEFAULT.read_text())
    data["scienceworld"] = {**data["scienceworld"], "enabled": False}
    alf_only = tmp_path / "alfworld-only.yaml"
    alf_only.write_text(yaml.safe_dump(data))
    d1 = make_definitions(str(alf_only), str(tmp_path / "one"))
    d2 = make_definitions(str(DEFAULT), str(tmp_path / "two"))
    r1, r2 = d1.resources["profile"], d2.resources["profile"]
    assert (r1.profile_path, r1.data_root) == (str(alf_only), str(tmp_path / "one"))
    assert (r2.profile_path, r2.data_root) == (str(DEFAULT), str(tmp_path / "two"))
    # ScienceWorld's chain is in the graph of the profile that enables it only
    keys2 = {k.to_user_string() for k in d2.resolve_asset_graph().materializable_asset_keys}
    keys1 = {k.to_user_string() for k in d1.resolve_asset_graph().materializable_asset_keys}
    assert "scienceworld/evaluation" in keys2 and "scienceworld/evaluation" not in keys1


def test_import_reads_no_profile(tmp_path):
    """With ACT_PROFILE naming a file that does not exist, importing every Dagster module works;
    only building the definitions reads (and here fails on) the profile."""
    env = dict(os.environ, ACT_PROFILE=str(tmp_path / "nowhere.yaml"), ACT_HOME=str(tmp_path / "home"))
    code = ("import act_pipeline.assets, act_pipeline.assets.graph, act_pipeline.assets.checks, "
            "act_pipeline.assets.sensors, act_pipeline.definitions\n"
            "from act_pipeline.config import ConfigError\n"
            "try:\n    act_pipeline.definitions.make_definitions()\nexcept ConfigError as e:\n    print('CONFIG', e)\n")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "CONFIG" in res.stdout and "nowhere.yaml" in res.stdout  # read at build time, not at import
    assert not (tmp_path / "home").exists()  # and importing wrote nothing


def test_code_location_loads_lazily():
    """`dagster dev` / `dg dev` load ``defs`` (a ``@dg.definitions`` function) from pyproject's [tool.dg]."""
    from act_pipeline import definitions

    loaded = definitions.defs()
    assert isinstance(loaded, dg.Definitions)
    assert dg.AssetKey(["alfworld", "evaluation"]) in loaded.resolve_asset_graph().materializable_asset_keys


def test_dg_check_defs(tmp_path):
    """pyproject's [tool.dg] makes this a dg project: `dg check defs` loads the code location."""
    from pathlib import Path

    dg_cli = Path(sys.executable).parent / "dg"
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), ACT_PROFILE=str(DEFAULT), ACT_HOME=str(tmp_path / "home"))
    res = subprocess.run([str(dg_cli), "check", "defs"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "All definitions loaded successfully" in res.stdout + res.stderr
