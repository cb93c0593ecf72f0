"""Training out of process, for real: `accelerate launch` with 2 CPU processes (gloo) for each
stage (ACT and RL in the default suite, IL under `-m slow`) and with DeepSpeed ZeRO-3 on CPU, started by the real training assets through Dagster Pipes; the checkpoint
comes back as materialization metadata and loads."""

import importlib.util
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from act_pipeline.assets.alfworld import ALFWORLD
from tests.conftest import REPO, SMOKE, asset, graph_config

ROW = {"game_id": "g1", "step": 0, "task": "put a mug in the sink.", "observation": "You see a sink 1.",
       "history": [{"action": "look", "observation": "You are in a room."}],
       "admissible": ["go to sink 1", "look", "inventory"], "expert_action": "go to sink 1", "won": True,
       "split": "train", "action_1": "go to sink 1", "action_2": "look", "expert_slot": 1}


def _profile(tmp_path: Path, accelerate_config: str, num_processes: int) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    data["act"].update(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=4)
    data["il"].update(max_steps=2, per_device_train_batch_size=2)
    data["rl"].update(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=4)
    data["training"] = {"launcher": "accelerate", "accelerate_config": accelerate_config,
                        "num_processes": num_processes}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _upstream(tmp_path: Path, tiny_model: str):
    """Stand-ins for the upstream assets: the tiny model and a small Parquet table of rows that
    serve both as contrast pairs and as expert steps (one evaluation row the filters must drop)."""
    from act_pipeline.files import dir_hash

    rows = [ROW, dict(ROW, step=1, action_1="look", action_2="go to sink 1", expert_slot=2)] * 4
    rows += [dict(ROW, split="valid_unseen", game_id="g2")]
    table_path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table_path)

    @dg.asset(name="base_model")
    def base_model() -> dict:
        return {"uri": tiny_model, "hash": dir_hash(tiny_model)}

    @dg.asset(key=ALFWORLD.key("contrast_pairs"))
    def contrast_pairs() -> dict:
        return {"uri": str(table_path), "hash": "rows-v1", "rows": len(rows)}

    @dg.asset(key=ALFWORLD.key("expert_trajectories"))
    def expert_trajectories() -> dict:
        return {"uri": str(table_path), "hash": "rows-v1", "rows": len(rows)}

    return [base_model, contrast_pairs, expert_trajectories]


def _materialize(tmp_path: Path, tiny_model: str, accelerate_config: str, assets: list):
    from act_pipeline.definitions import build_resources

    profile = _profile(tmp_path, accelerate_config, 2)
    instance = dg.DagsterInstance.ephemeral()
    res = dg.materialize(_upstream(tmp_path, tiny_model) + assets,
                         resources=build_resources(str(profile), str(tmp_path / "home")),
                         instance=instance, raise_on_error=True)
    assert res.success
    # the run's log: what the training process logged through Pipes, as it ran
    res.log_messages = [e.user_message for e in instance.all_logs(res.run_id)]
    return res


def _check_checkpoint(res, key: str, zero_stage, distributed_type: str, home: Path) -> Path:
    from transformers import AutoModelForCausalLM

    node = "__".join(dg.AssetKey.from_user_string(key).path)  # the op of alfworld/act_checkpoint
    mats = [m for m in res.asset_materializations_for_node(node)]
    assert len(mats) == 1
    md = {k: getattr(v, "value", v) for k, v in mats[0].metadata.items()}
    out = Path(md["uri"])
    assert out.is_dir() and (out / "model.safetensors").exists()
    assert not any(p.suffix in {".bin", ".pt"} for p in out.iterdir())  # safetensors only
    assert md["global_step"] == 2 and md["world_size"] == 2
    assert md["distributed_type"] == distributed_type and md["backend"] == "gloo"
    assert md.get("zero_stage") == zero_stage
    assert AutoModelForCausalLM.from_pretrained(out, use_safetensors=True) is not None
    # the manifest the IO manager passed on names the same checkpoint
    manifest = json.loads((home / "manifests" / f"{node}.json").read_text())
    assert manifest["uri"] == str(out) and manifest["global_step"] == 2
    card = json.loads((out / "model_card.json").read_text())
    assert card["global_step"] == 2 and card["dagster_run_id"] == res.run_id
    return out


def test_core_never_imports_dagster():
    """The core, the training entry point included, imports neither dagster nor dagster_pipes."""
    import subprocess
    import sys

    code = ("import sys; import act_pipeline.training.launch, act_pipeline.training.act_grpo, "
            "act_pipeline.training.sft, act_pipeline.training.rl_grpo, act_pipeline.envs.workers, act_pipeline.envs.scienceworld, act_pipeline.sampling.backends, act_pipeline.sampling.vllm, "
            "act_pipeline.sampling.alternatives, act_pipeline.evaluation.metrics, act_pipeline.data.store, "
            "act_pipeline.envs.alfworld; print(sorted(m for m in sys.modules if m.startswith('dagster')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_entry_point_rejects_a_bad_job(tmp_path):
    from act_pipeline.training.launch import STAGES, load_job

    assert {"act", "il", "rl"} <= set(STAGES)
    p = tmp_path / "job.json"
    p.write_text(json.dumps({"stage": "ppo", "init_model": "m", "data_uri": "d", "out_dir": "o", "config": {}}))
    with pytest.raises(ValueError, match="unknown stage 'ppo'"):
        load_job(p)
    p.write_text(json.dumps({"stage": "act"}))
    with pytest.raises(ValueError, match="missing init_model, data_uri, out_dir, config"):
        load_job(p)


def test_act_through_pipes_with_two_cpu_processes(tmp_path, tiny_model):
    """In the default suite (~30 s): ACT GRPO, 2 steps, 2 CPU processes (gloo)."""
    res = _materialize(tmp_path, tiny_model, "configs/accelerate/cpu.yaml",
                       [asset(graph_config(), "alfworld/act_checkpoint")])
    _check_checkpoint(res, "alfworld/act_checkpoint", None, "MULTI_CPU", tmp_path / "home")
    # the training process's log lines streamed into the run's log
    assert any("ACT GRPO: 8 pairs, 2 steps" in m for m in res.log_messages)
    assert any("step 2/2" in m for m in res.log_messages)
    # the held-out judgement probe runs under accelerate too (every rank generates, rank 0 reports),
    # on the job file's held-out pairs, and its curve comes back through Pipes into the manifest
    manifest = json.loads((tmp_path / "home" / "manifests" / "alfworld__act_checkpoint.json").read_text())
    assert [(c["step"], c["n"], c["split"]) for c in manifest["judgement_curve"]] == [(0, 1, "valid_unseen"),
                                                                                       (2, 1, "valid_unseen")]
    assert any("probe at step 2" in m for m in res.log_messages)
    assert "frac_groups_equal_reward" in manifest["learning_signal"]


def test_rl_through_pipes_with_two_cpu_processes(tmp_path, tiny_model):
    """In the default suite: stage-3 RL (GRPO on next-action generation), 2 steps, 2 CPU processes."""
    res = _materialize(tmp_path, tiny_model, "configs/accelerate/cpu.yaml",
                       [asset(graph_config(), "alfworld/rl_baseline")])
    _check_checkpoint(res, "alfworld/rl_baseline", None, "MULTI_CPU", tmp_path / "home")
    assert any("RL GRPO: 8 states, 2 steps" in m for m in res.log_messages)  # the won train rows only
    assert any("step 2/2" in m for m in res.log_messages)


@pytest.mark.slow
def test_il_through_pipes_with_two_cpu_processes(tmp_path, tiny_model):
    res = _materialize(tmp_path, tiny_model, "configs/accelerate/cpu.yaml",
                       [asset(graph_config(), "alfworld/il_baseline")])
    _check_checkpoint(res, "alfworld/il_baseline", None, "MULTI_CPU", tmp_path / "home")
    assert any("SFT: 8 expert steps" in m for m in res.log_messages)  # the won train rows only


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install act-pipeline[distributed])")
def test_act_through_pipes_with_deepspeed_zero3_on_cpu(tmp_path, tiny_model):
    res = _materialize(tmp_path, tiny_model, str(REPO / "configs" / "accelerate" / "deepspeed_zero3_cpu.yaml"),
                       [asset(graph_config(), "alfworld/act_checkpoint")])
    _check_checkpoint(res, "alfworld/act_checkpoint", 3, "DEEPSPEED", tmp_path / "home")
    assert any("step 2/2" in m for m in res.log_messages)
