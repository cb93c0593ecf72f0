"""Bad input through a real Dagster materialization: one clear error, nothing half-written."""

import dagster as dg
import pytest

from act_pipeline.definitions import build_resources

from .conftest import SMOKE, asset, graph_config


@pytest.mark.parametrize("make,needle", [
    (lambda p: p / "missing", "ALFWORLD_DATA points to"),
    (lambda p: p, "no json_2.1.1"),
])
def test_bad_alfworld_data_fails_the_asset_with_a_clear_message(tmp_path, monkeypatch, make, needle):
    data = make(tmp_path / "data")
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(data))
    home = tmp_path / "home"
    res = dg.materialize([asset(graph_config(), "alfworld/games")], resources=build_resources(str(SMOKE), str(home)),
                         instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not res.success
    failure = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0]
    err = failure.step_failure_data.error
    msgs = [err.message] + ([err.cause.message] if err.cause else [])
    assert any(needle in m and str(data) in m for m in msgs), msgs
    assert "AlfworldDataError" in " ".join(msgs)
    assert not (home / "manifests" / "alfworld__games.json").exists()
    assert not list(home.glob("artifacts/alfworld/games/*/games.parquet"))
