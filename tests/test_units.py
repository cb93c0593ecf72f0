"""Unit tests: normalisation, parsing, rewards, config validation, game building, pair SQL."""

import json
from pathlib import Path

import pyarrow as pa
import pytest

from act_pipeline.envs.actions import normalize_action
from act_pipeline.act.pairs import build_pairs, filter_alternatives
from act_pipeline.act.parsing import parse_action, parse_choice
from act_pipeline.act.rewards import action_reward, judgement_reward, make_judgement_reward
from act_pipeline.config import ConfigError, load_config
from act_pipeline.data.store import Warehouse, write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.envs import alfworld as aw
from act_pipeline.sampling.alternatives import ALTERNATIVES_SCHEMA

from .alfworld_source import expected_games

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw,norm", [
    ("Go to Shelf 1", "go to shelf 1"),
    ("  take  apple 1   from countertop 2. ", "take apple 1 from countertop 2"),
    ("Action: open fridge 1", "open fridge 1"),
    ("> look", "look"),
    ('"heat egg 1 with microwave 1"', "heat egg 1 with microwave 1"),
    ("**go to desk 1**", "go to desk 1"),
])
def test_normalize(raw, norm):
    assert normalize_action(raw) == norm


def test_normalize_keeps_distinct_actions_distinct():
    assert normalize_action("go to shelf 1") != normalize_action("go to shelf 10")


@pytest.mark.parametrize("completion,action", [
    ("go to shelf 1</action>", "go to shelf 1"),
    ("<action>Open drawer 2</action>", "open drawer 2"),
    ("<think>need the key</think>\n<action>take keychain 1 from drawer 2</action>", "take keychain 1 from drawer 2"),
    ("look\nmore text", None),  # strict: an unclosed body must be one line (tests/test_parsing.py)
    ("   </action>", None),
    ("", None),
])
def test_parse_action(completion, action):
    assert parse_action(completion) == action


@pytest.mark.parametrize("completion,choice", [
    ("1</answer>", 1), (" 2 </answer>", 2), ("Action 2</answer>", 2), ("<answer>1</answer>", 1),
    ("1", 1), ("neither</answer>", None), ("1 and 2</answer>", None), ("", None),
    ("<think>Action 1 wastes a step</think><answer>2</answer>", 2),
])
def test_parse_choice(completion, choice):
    assert parse_choice(completion) == choice


def test_judgement_reward_values():
    assert judgement_reward("1</answer>", 1) == 1.0
    assert judgement_reward("2</answer>", 1) == 0.0
    assert judgement_reward("maybe", 2) == -0.5
    assert judgement_reward("maybe", 2, penalty=-1.0) == -1.0
    fn = make_judgement_reward(-0.25)
    # TRL calls reward functions with completions plus dataset columns as keyword lists
    assert fn(completions=["1</answer>", "1</answer>", "x"], expert_slot=[1, 2, 1], prompts=["p"] * 3) == [1.0, 0.0, -0.25]
    conversational = [[{"role": "assistant", "content": "2</answer>"}]]
    assert fn(completions=conversational, expert_slot=[2]) == [1.0]


def test_action_reward_values():
    adm = ["go to shelf 1", "look", "open drawer 1"]
    assert action_reward("Go to shelf 1</action>", "go to shelf 1", adm) == 1.0
    assert action_reward("open drawer 1</action>", "go to shelf 1", adm) == 0.1
    assert action_reward("dance</action>", "go to shelf 1", adm) == 0.0
    assert action_reward("</action>", "go to shelf 1", adm) == -0.5


def test_filter_alternatives_drops_expert_inadmissible_duplicates():
    out = filter_alternatives(["Look.</action>", "go to shelf 1</action>", "look", "jump", ""],
                              "Go to shelf 1", ["go to shelf 1", "look"])
    assert [r for _, r in out] == ["kept", "equals_expert", "duplicate", "inadmissible", "unparsable"]


# ----------------------------------------------------------------------------- config


def _write(tmp_path, text):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_profiles_load():
    for name in ("smoke", "default", "gpu-qwen3-8b"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.name == name


def test_cpu_profiles_train_in_process_and_the_gpu_profile_through_accelerate():
    from act_pipeline.config import accelerate_config_path, uses_gpu

    for name in ("smoke", "default"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.training.launcher == "inprocess" and cfg.sampling.backend == "transformers" and not uses_gpu(cfg)
    gpu = load_config(REPO / "configs" / "gpu-qwen3-8b.yaml")
    assert gpu.training.launcher == "accelerate" and accelerate_config_path(gpu.training).name == "deepspeed_zero3.yaml"
    assert gpu.sampling.backend == "vllm" and gpu.training.vllm.use_vllm and gpu.training.vllm.mode == "colocate"
    assert uses_gpu(gpu) and gpu.act.bf16 and gpu.il.bf16
    # GRPO: the global batch (completions per step) must be a multiple of the group size
    assert gpu.act.per_device_train_batch_size * gpu.training.num_processes % gpu.act.num_generations == 0


@pytest.mark.parametrize("text,needle", [
    ("sampling:\n  kk: 3\n", "unknown key `sampling.kk`"),
    ("sampling:\n  k: -1\n", "`sampling.k` must be > 0"),
    ("sampling:\n  k: two\n", "`sampling.k` must be an integer"),
    ("model:\n  source: hf\n", "`model.path` is required"),
    ("bogus: 1\n", "unknown key `bogus`"),
    ("act: [1, 2]\n", "`act` must be a mapping"),
    ("training:\n  launcher: slurm\n", "`training.launcher` must be inprocess or accelerate"),
    ("training:\n  launcher: accelerate\n  accelerate_config: configs/accelerate/nope.yaml\n",
     "`training.accelerate_config`"),
    ("training:\n  num_processes: 0\n", "`training.num_processes` must be > 0"),
    ("training:\n  vllm:\n    mode: remote\n", "`training.vllm.mode` must be colocate or server"),
    ("training:\n  vllm:\n    use_vllm: yes please\n", "`training.vllm.use_vllm` must be true/false"),
    ("sampling:\n  backend: tgi\n", "`sampling.backend` must be transformers or vllm"),
    ("sampling:\n  tensor_parallel_size: 0\n", "`sampling.tensor_parallel_size` must be > 0"),
])
def test_config_errors_name_file_and_field(tmp_path, text, needle):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value) and str(p) in str(e.value)


# ----------------------------------------------------------------------------- ALFWorld data


def test_build_game_from_problem_and_installed_logic(alfworld_source, tmp_path):
    alfworld_data = alfworld_source.path
    games = aw.discover_games(alfworld_data, "valid_seen")
    # every game is found: the official 140 (in-distribution) / 134 (out-of-distribution), or as many as generated
    assert len(games) == expected_games(alfworld_source, "valid_seen")
    assert len(aw.discover_games(alfworld_data, "valid_unseen")) == expected_games(alfworld_source, "valid_unseen")
    g = games[0]
    gamefile = aw.build_game(g.path, tmp_path / "g")
    data = json.loads(gamefile.read_text())
    assert set(data) >= {"pddl_domain", "grammar", "pddl_problem"}
    assert "UNKNOWN GOAL" not in data["grammar"]  # the task was put into the grammar
    assert (tmp_path / "g" / "traj_data.json").exists()  # the handcoded expert reads it
    game = aw.AlfworldGame(gamefile, expert="planner")
    obs, info = game.reset()
    assert game.task and "You are in the middle of a room" in obs
    assert info["expert_action"] in info["admissible"]


def test_select_balanced_covers_task_types(alfworld_data):
    games = aw.select_balanced(aw.discover_games(alfworld_data, "train"), 6)
    assert sorted(g.task_type for g in games) == sorted(aw.TASK_TYPES)


def test_bad_alfworld_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nope"))
    with pytest.raises(aw.AlfworldDataError, match="ALFWORLD_DATA points to .*nope.*does not exist"):
        aw.resolve_data_root(None)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "empty"))
    with pytest.raises(aw.AlfworldDataError, match="no json_2.1.1"):
        aw.resolve_data_root(None)
    trial = tmp_path / "d" / "json_2.1.1" / "train" / "pick_and_place_simple-A-None-B-1" / "trial_1"
    trial.mkdir(parents=True)
    (trial / "traj_data.json").write_text('{"task_type": "pick_and_place_simple", "pddl_params": {}}')
    with pytest.raises(aw.AlfworldDataError, match="trial_1: missing initial_state.pddl"):
        aw.discover_games(tmp_path / "d", "train")
    (trial / "initial_state.pddl").write_text("(define (problem x)")
    (trial / "traj_data.json").write_text("{not json")
    with pytest.raises(aw.AlfworldDataError, match=r"traj_data.json:1: not valid JSON"):
        aw.discover_games(tmp_path / "d", "train")
    with pytest.raises(aw.AlfworldDataError, match="split folder `valid_seen` is missing"):
        aw.discover_games(tmp_path / "d", "valid_seen")


# ----------------------------------------------------------------------------- pairs in DuckDB


def _state(i, split="train"):
    return {"state_id": f"s{i}", "game_id": f"g{i % 3}", "split": split, "task_type": "t", "task": "task",
            "step": i, "observation": "obs", "history": [], "admissible": ["a", "b", "c", "d"],
            "expert_action": "a", "won": True}


VIEWS = ("alfworld_expert_trajectories", "alfworld_sampled_alternatives")  # as the pipeline names its views


def test_pairs_sql_slots_balanced_and_never_expert(tmp_path):
    states = [_state(i) for i in range(40)] + [_state(100 + i, "valid_unseen") for i in range(10)]
    alts = []
    for s in states:
        for j, a in enumerate(["b", "c", "a"]):
            alts.append({"state_id": s["state_id"], "split": s["split"], "sample_index": j, "completion": a,
                         "action": a, "reason": "equals_expert" if a == "a" else "kept", "origin": "model"})
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.register(VIEWS[0], write_parquet_atomic(pa.Table.from_pylist(states, TRAJECTORY_SCHEMA), tmp_path / "t.parquet"))
    wh.register(VIEWS[1], write_parquet_atomic(pa.Table.from_pylist(alts, ALTERNATIVES_SCHEMA), tmp_path / "a.parquet"))
    pairs = build_pairs(wh, VIEWS[0], VIEWS[1], 0)[0].to_pylist()
    assert len(pairs) == 100
    assert all(p["alternative"] != p["expert_action"] for p in pairs)
    for p in pairs:
        slots = {1: p["action_1"], 2: p["action_2"]}
        assert slots[p["expert_slot"]] == p["expert_action"]
        assert slots[3 - p["expert_slot"]] == p["alternative"]
    train = [p for p in pairs if p["split"] == "train"]
    assert sum(p["expert_slot"] == 1 for p in train) == len(train) // 2
    again = build_pairs(wh, VIEWS[0], VIEWS[1], 0)[0].to_pylist()
    assert [p["expert_slot"] for p in again] == [p["expert_slot"] for p in pairs]  # seeded
    other = build_pairs(wh, VIEWS[0], VIEWS[1], 1)[0].to_pylist()
    assert [p["expert_slot"] for p in other] != [p["expert_slot"] for p in pairs]


def test_rl_reward_function_in_trl_signature():
    from act_pipeline.act.rewards import make_action_reward

    fn = make_action_reward()
    adm = [["go to sink 1", "look"]] * 4
    got = fn(completions=["go to sink 1</action>", "look</action>", "fly</action>", ""],
             expert_action=["go to sink 1"] * 4, admissible=adm, prompts=["p"] * 4)
    assert got == [1.0, 0.1, 0.0, -0.5]
    # conversational completions, as TRL passes them for chat datasets
    assert fn(completions=[[{"role": "assistant", "content": "Look</action>"}]], expert_action=["look"],
              admissible=[["look"]]) == [1.0]
