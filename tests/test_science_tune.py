"""``python -m act_pipeline.science tune``'s candidates: profile fields set by dotted key, checked
like any profile before a run, and runs merged into one tuning.json."""

import json

import pytest
import yaml

from act_pipeline.config import ConfigError, load_config
from act_pipeline.science import _merge_runs, parse_settings, tune_profile

from .conftest import REPO

pytestmark = pytest.mark.timeout(120)
TUNE = REPO / "configs" / "science-tune.yaml"


def test_a_candidate_sets_fields_and_adds_a_missing_section(tmp_path):
    s = parse_settings("act.learning_rate=3e-6 act.num_generations=2 training.gradient_checkpointing=true")
    assert s == {"act.learning_rate": 3e-06, "act.num_generations": 2, "training.gradient_checkpointing": True}
    cfg = load_config(tune_profile(TUNE, s, tmp_path))
    assert (cfg.act.learning_rate, cfg.act.num_generations, cfg.training.gradient_checkpointing) == (3e-06, 2, True)
    assert cfg.eval.split == "validation"  # everything else is the tuning profile's
    assert cfg.name == "science-tune-learning_rate3e-06-num_generations2-gradient_checkpointingTrue"
    # a bare number is an ACT learning rate (the --rates form)
    assert load_config(tune_profile(TUNE, 1e-5, tmp_path)).act.learning_rate == 1e-5


@pytest.mark.parametrize("bad,error", [("act.nope=1", ConfigError), ("seed.x=1", SystemExit), ("act.learning_rate", SystemExit)])
def test_a_bad_candidate_fails_before_any_run_and_leaves_no_profile(tmp_path, bad, error):
    with pytest.raises(error):
        tune_profile(TUNE, parse_settings(bad), tmp_path)
    assert not list(tmp_path.glob("*.yaml"))


def test_runs_are_merged_and_a_rerun_replaces_its_entry(tmp_path):
    out = tmp_path / "tuning.json"
    out.write_text(json.dumps({"runs": [{"act_learning_rate": 1e-5, "act": {"mean": 0.5}}]}))  # the old form
    a = {"settings": {"act.learning_rate": 3e-6}, "act": {"mean": 0.6}}
    b = {"settings": {"act.learning_rate": 1e-5, "act.beta": 0.04}, "act": {"mean": 0.55}}
    _merge_runs(out, TUNE, a)
    doc = _merge_runs(out, TUNE, b)
    assert [r["settings"] for r in doc["runs"]] == [{"act.learning_rate": 1e-5}, a["settings"], b["settings"]]
    assert doc["best_settings"] == a["settings"] and doc["best_above_chance"] is False  # no interval given
    doc = _merge_runs(out, TUNE, {**a, "act": {"mean": 0.4}})  # the same settings again: replaced, not added
    assert len(doc["runs"]) == 3 and doc["best_settings"] == b["settings"]
    assert json.loads(out.read_text()) == doc
    doc = _merge_runs(out, TUNE, {**a, "act": {"mean": 0.7, "ci": [0.6, 0.8]}})
    assert doc["best_settings"] == a["settings"] and doc["best_above_chance"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["tuning.json"]  # no lock file beside it
