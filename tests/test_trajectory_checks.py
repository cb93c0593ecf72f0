"""Blocking checks on the expert trajectories: no leak into training, admissible expert actions,
no silent truncation of IL examples and RL prompts; and SFT's length is the model's, not a constant."""

import json

import dagster as dg
import pyarrow as pa
import pytest
import yaml

from act_pipeline.assets.alfworld import ALFWORLD
from act_pipeline.assets.checks import trajectory_checks
from act_pipeline.assets.graph import build_assets
from act_pipeline.assets.scienceworld import SCIENCEWORLD
from act_pipeline.config import ILConfig, ModelConfig, load_config
from act_pipeline.data import quality
from act_pipeline.data.imports import accept, load_store
from act_pipeline.data.store import write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA, state_id
from act_pipeline.definitions import build_resources
from act_pipeline.training.fit import training_examples_fit

from .conftest import SMOKE, graph_config

# ALFWorld-like ids: one training game, a held-out valid_unseen game, a valid_seen roll-out game
TRAIN = "pick_and_place_simple-Mug-None-SinkBasin-1/trial_T20190001_000001_000001"
UNSEEN = "pick_and_place_simple-Mug-None-SinkBasin-310/trial_T20190002_000002_000002"
SEEN = "pick_and_place_simple-Mug-None-SinkBasin-2/trial_T20190003_000003_000003"
ALF_GAMES = [
    {"game_id": TRAIN, "split": "train", "task_type": "pick_and_place_simple", "roles": ["train"], "game_hash": "a"},
    {"game_id": UNSEEN, "split": "valid_unseen", "task_type": "pick_and_place_simple",
     "roles": ["eval", "heldout_states"], "game_hash": "b"},
    {"game_id": SEEN, "split": "valid_seen", "task_type": "pick_and_place_simple", "roles": ["eval"], "game_hash": "c"},
]
# ScienceWorld: train variations and held-out test variations of a task (game id = "<task>/<variation>")
SW_TRAIN, SW_TEST = "find-non-living-thing/0", "find-non-living-thing/7"
SW_GAMES = [
    {"game_id": SW_TRAIN, "split": "train", "task_type": "find-non-living-thing", "gamefile": SW_TRAIN,
     "roles": ["train"]},
    {"game_id": SW_TEST, "split": "test", "task_type": "find-non-living-thing", "gamefile": SW_TEST,
     "roles": ["heldout_states"]},
]
ADMISSIBLE = ["go to sink 1", "look", "inventory"]


def _played(game: str, split: str, n: int = 3, task_type: str = "pick_and_place_simple", **over) -> list[dict]:
    rows = []
    for i in range(n):
        obs = f"You are in a room ({game} step {i})."
        rows.append({"state_id": state_id(game, "put a mug in sink", obs, [], ADMISSIBLE, i), "game_id": game,
                     "split": split, "task_type": task_type, "task": "put a mug in sink", "step": i,
                     "observation": obs, "history": [], "admissible": ADMISSIBLE, "expert_action": "go to sink 1",
                     "won": True, **over})
    return rows


def _write_import(path, game_id: str) -> None:
    path.write_text("".join(json.dumps({
        "game_id": game_id, "task_type": "pick_and_place_simple", "task": "put a mug in sink.", "step": i,
        "observation": f"imported step {i}", "admissible": ADMISSIBLE, "expert_action": "go to sink 1"}) + "\n"
        for i in range(2)))


def _imported(tmp_path, game_id: str) -> pa.Table:
    """A user's JSONL file accepted into the store before the first run (no games manifest yet, so
    ``accept`` had no evaluation ids to refuse it with) and loaded as the imported_expert_steps asset does."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "mine.jsonl"
    _write_import(src, game_id)
    store = tmp_path / "expert_imports"
    accept(src, store)  # what `act-pipeline import-expert` does when no games manifest exists yet
    table, files = load_store(store)
    assert table.num_rows == 2 and len(files) == 1
    return table


def _trajectories(tmp_path, rows: list[dict], imported: pa.Table | None = None) -> str:
    """expert_trajectories as the asset writes it: the played steps, then the imported ones."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, TRAJECTORY_SCHEMA)
    if imported is not None:
        table = pa.concat_tables([table, imported])
    return str(write_parquet_atomic(table, tmp_path / "steps.parquet"))


def _games(tmp_path, games: list[dict]) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return str(write_parquet_atomic(pa.Table.from_pylist(games), tmp_path / "games.parquet"))


# --------------------------------------------------------------------------- core functions


def test_leaking_imported_file_fails_the_leak_check(tmp_path):
    games = _games(tmp_path, ALF_GAMES)
    played = _played(TRAIN, "train") + _played(UNSEEN, "valid_unseen")
    clean = _trajectories(tmp_path / "a", played, _imported(tmp_path / "a", "my-kitchen/trial_1"))
    ok, desc, meta = quality.no_eval_state_in_training(clean, games)
    assert ok, desc
    assert meta["eval_games"] == 2
    # the imported file's game id is a valid_unseen game: its steps would train on the held-out set
    leaking = _trajectories(tmp_path / "b", played, _imported(tmp_path / "b", UNSEEN))
    ok, desc, meta = quality.no_eval_state_in_training(leaking, games)
    assert not ok and meta["bad_games"] == [UNSEEN] and meta["bad"] == 2, desc


@pytest.mark.parametrize("game", [SEEN, UNSEEN])
def test_training_steps_of_any_eval_game_fail(tmp_path, game):
    # valid_seen roll-out games count as much as the held-out valid_unseen ones
    rows = _played(TRAIN, "train") + _played(UNSEEN, "valid_unseen") + _played(game, "train", 1)
    ok, _, meta = quality.no_eval_state_in_training(_trajectories(tmp_path, rows), _games(tmp_path, ALF_GAMES))
    assert not ok and meta["bad_games"] == [game]


def test_training_state_equal_to_a_heldout_state_fails(tmp_path):
    held = _played(UNSEEN, "valid_unseen")
    rows = _played(TRAIN, "train") + held + [dict(held[0], split="train", game_id="copied/trial_1")]
    ok, _, meta = quality.no_eval_state_in_training(_trajectories(tmp_path, rows), _games(tmp_path, ALF_GAMES))
    assert not ok and meta["bad_state_rows"] == 1


def test_same_game_file_under_another_id_fails(tmp_path):
    # a training game whose built game file is byte-identical to a valid_seen game's
    games = ALF_GAMES + [{"game_id": "dup/trial_1", "split": "train", "task_type": "pick_and_place_simple",
                          "roles": ["train"], "game_hash": "c"}]
    rows = _played(TRAIN, "train") + _played("dup/trial_1", "train")
    ok, _, meta = quality.no_eval_state_in_training(_trajectories(tmp_path, rows), _games(tmp_path, games))
    assert not ok and meta["bad_games"] == ["dup/trial_1"]


def test_leaking_pairs_table_fails_against_the_games_manifest(tmp_path):
    """The pairs check compares with the games manifest and the held-out expert states, not only
    with the rows of the pairs table (which a pairs table without held-out rows would pass)."""
    games = _games(tmp_path, ALF_GAMES)
    traj = _trajectories(tmp_path, _played(TRAIN, "train") + _played(UNSEEN, "valid_unseen"))
    pair = {"pair_id": "p", "alternative": "look", "expert_slot": 1}
    train_pairs = [dict(r, **pair) for r in _played(TRAIN, "train")]
    ok_path = write_parquet_atomic(pa.Table.from_pylist(train_pairs), tmp_path / "ok.parquet")
    assert quality.no_eval_state_in_training(ok_path, games, traj)[0]
    for name, leak in {"game": dict(_played(SEEN, "train", 1)[0], **pair),
                       "state": dict(_played(UNSEEN, "valid_unseen", 1)[0], split="train", **pair)}.items():
        bad = write_parquet_atomic(pa.Table.from_pylist(train_pairs + [leak]), tmp_path / f"{name}.parquet")
        ok, desc, meta = quality.no_eval_state_in_training(bad, games, traj)
        assert not ok and meta["bad"] == 1, (name, desc)


def test_inadmissible_expert_action_fails(tmp_path):
    rows = _played(TRAIN, "train")
    rows[0]["expert_action"] = "Go to sink 1."  # the same action after normalisation: fine
    assert quality.expert_action_admissible(_trajectories(tmp_path / "a", rows))[0]
    rows[1]["expert_action"] = "go to fridge 1"
    ok, desc, meta = quality.expert_action_admissible(_trajectories(tmp_path / "b", rows))
    assert not ok and meta["bad"] == 1 and meta["examples"][0]["state_id"] == rows[1]["state_id"], desc
    # steps of a game the expert lost never reach pairs, training or evaluation: counted, not failed
    lost = [dict(r, won=False) for r in rows]
    ok, _, meta = quality.expert_action_admissible(_trajectories(tmp_path / "c", lost))
    assert ok and meta["bad_unwon"] == 1


def test_training_examples_fit(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = _played(TRAIN, "train")
    ok, desc, meta = training_examples_fit(rows, tok, 2, False, 2048, 2048, 8)
    assert ok, desc
    n = meta["il_longest"]
    assert not training_examples_fit(rows, tok, 2, False, n - 1, 2048, 8)[0]  # one token short for IL
    p = meta["rl_longest_prompt"]
    assert training_examples_fit(rows, tok, 2, False, n, p + 8, 8)[0]
    ok, desc, meta = training_examples_fit(rows, tok, 2, False, n, p + 7, 8)  # prompt + completion too long
    assert not ok and meta["rl_too_long"] >= 1 and meta["il_too_long"] == 0, desc


# --------------------------------------------------------------------------- through Dagster


def _run_checks(tmp_path, bench, rows: list[dict], games: list[dict], tiny_model: str, imported=None,
                profile=SMOKE):
    """Materialize expert_trajectories (written as the asset writes it) with the benchmark's real
    blocking checks and an asset downstream of it; the games manifest and the base model are loaded
    through the JSON IO manager like in a real run."""
    uri = _trajectories(tmp_path, rows, imported)
    traj_key = bench.key("expert_trajectories")
    games_key = bench.key("games")

    @dg.asset(key=traj_key)
    def expert_trajectories() -> dict:
        return {"uri": uri, "hash": "t"}

    @dg.asset(key=bench.key("downstream"), ins={"steps": dg.AssetIn(key=traj_key)})
    def downstream(steps: dict) -> dict:
        return {"uri": steps["uri"], "hash": "d"}

    home = tmp_path / "home"
    (home / "manifests").mkdir(parents=True)
    for key, m in {games_key: {"uri": _games(tmp_path, games), "hash": "g"},
                   dg.AssetKey("base_model"): {"uri": tiny_model, "hash": "b", "name": "tiny"}}.items():
        (home / "manifests" / ("__".join(key.path) + ".json")).write_text(json.dumps(m))
    upstream = [a for a in build_assets(graph_config()) if a.key in (games_key, dg.AssetKey("base_model"))]
    assert len(upstream) == 2
    res = dg.materialize([*upstream, expert_trajectories, downstream, *trajectory_checks(bench)],
                         selection=[traj_key, bench.key("downstream")],
                         resources=build_resources(str(profile), str(home)),
                         instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    done = {e.asset_key for e in res.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    return checks, bench.key("downstream") in done


def test_leaking_import_is_stopped_in_dagster(tmp_path, tiny_model):
    rows = _played(TRAIN, "train") + _played(UNSEEN, "valid_unseen")
    checks, ran = _run_checks(tmp_path, ALFWORLD, rows, ALF_GAMES, tiny_model, _imported(tmp_path, UNSEEN))
    assert checks == {"no_eval_state_in_training": False, "expert_action_admissible": True,
                      "training_examples_fit_context": True}
    assert not ran  # blocking: nothing downstream of the trajectories runs


def test_clean_trajectories_pass_in_dagster(tmp_path, tiny_model):
    rows = _played(TRAIN, "train") + _played(UNSEEN, "valid_unseen")
    checks, ran = _run_checks(tmp_path, ALFWORLD, rows, ALF_GAMES, tiny_model, _imported(tmp_path, "mine/trial_1"))
    assert checks == {"no_eval_state_in_training": True, "expert_action_admissible": True,
                      "training_examples_fit_context": True}
    assert ran


@pytest.mark.parametrize("bad", ["leak", "inadmissible"])
def test_scienceworld_trajectory_checks_block(tmp_path, tiny_model, bad):
    rows = _played(SW_TRAIN, "train", task_type="find-non-living-thing") + _played(SW_TEST, "test")
    if bad == "leak":  # a test variation's steps labelled train
        rows += _played(SW_TEST, "train", 1, observation="x")
    else:
        rows[0]["expert_action"] = "teleport to the moon"
    checks, ran = _run_checks(tmp_path, SCIENCEWORLD, rows, SW_GAMES, tiny_model)
    assert checks["no_eval_state_in_training"] is (bad != "leak")
    assert checks["expert_action_admissible"] is (bad != "inadmissible")
    assert not ran


def test_il_max_length_from_the_profile_blocks_long_examples(tmp_path, tiny_model):
    prof = yaml.safe_load(SMOKE.read_text())
    prof["il"]["max_length"] = 32  # far shorter than any agent prompt
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(prof))
    assert load_config(path).il.max_length == 32
    rows = _played(TRAIN, "train") + _played(UNSEEN, "valid_unseen")
    checks, ran = _run_checks(tmp_path, ALFWORLD, rows, ALF_GAMES, tiny_model, profile=path)
    assert checks["training_examples_fit_context"] is False and not ran


# --------------------------------------------------------------------------- SFT's length


@pytest.fixture(scope="module")
def long_context_model(tmp_path_factory, tiny_model):
    """A tiny random Llama with a 4096-token context window (the smoke model has 2048)."""
    from act_pipeline.models import build_tiny_random, context_window, resolve_base_model

    smol = resolve_base_model(ModelConfig(source="smollm2-gguf"), 0, log=lambda m: None)
    path = build_tiny_random(smol, tmp_path_factory.mktemp("m") / "tiny4096",
                             ModelConfig(source="tiny-random", max_context_tokens=4096), 0)
    assert context_window(str(path)) == 4096
    return str(path)


def test_sft_trains_on_examples_longer_than_2048_tokens(tmp_path, long_context_model):
    """il.max_length 0 is the model's context window: an expert step whose prompt is ~2300 tokens
    keeps its target (SFT's old constant max_length=2048 cut it off and TRL dropped the example)."""
    from transformers import AutoTokenizer

    from act_pipeline.training.sft import action_dataset, example_lengths, train_sft

    row = dict(_played(TRAIN, "train", 1)[0], observation="On the countertop 1, you see " + "a mug, " * 750)
    tok = AutoTokenizer.from_pretrained(long_context_model)
    n = example_lengths(action_dataset([row], tok, 0), tok)[0]
    assert 2048 < n <= 4096, n
    res = train_sft(long_context_model, [row], tmp_path / "out", ILConfig(max_steps=1, per_device_train_batch_size=1),
                    history_len=0, log=lambda m: None)
    assert res["global_step"] == 1 and res["loss_first"] is not None


def test_sft_refuses_to_cut_examples(tmp_path, tiny_model):
    from act_pipeline.training.sft import train_sft

    with pytest.raises(ValueError, match="longer than max_length 16 tokens"):
        train_sft(tiny_model, _played(TRAIN, "train"), tmp_path / "out", ILConfig(max_steps=1, max_length=16),
                  log=lambda m: None)
    assert not (tmp_path / "out").exists()
