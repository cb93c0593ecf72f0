"""Run profiles (act_pipeline/config.py): one-line errors naming file, line and key; the shipped
profiles load; section hashes (asset code versions) are those of the dataclass implementation."""

import json
from pathlib import Path

import pytest

from act_pipeline.config import (ACTConfig, ConfigError, PipelineConfig, TrainingConfig, VLLMTrainConfig,
                                 load_config)

pytestmark = pytest.mark.timeout(60)  # unit tests: seconds

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("default", "smoke", "paper-qwen3-8b", "gpu-qwen3-8b")


def _load_error(tmp_path, text: str) -> str:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg and "pydantic" not in msg.lower()
    return msg.replace(str(p), "P")


@pytest.mark.parametrize("text,expected", [
    # unknown key: dotted path, line, the known keys
    ("seed: 1\nsampling:\n  k: 2\n  kk: 3\n",
     "P:4: unknown key `sampling.kk` (known: backend, batch_size, constrained_temperature, gpu_memory_utilization, "
     "k, max_new_tokens, model_path, policy, states_per_game, temperature, tensor_parallel_size, top_p, workers)"),
    ("name: x\nbogus: 1\n", "P:2: unknown key `bogus` (known: act, alfworld, arms, early_experience, envs, eval, il, "
                            "model, name, pairs, rl, sampling, scienceworld, seed, seeds, threads, training, transfer)"),
    # training seeds and arms
    ("seeds: [0, 0]\n", "P:1: `seeds` must be distinct integers >= 0, got [0, 0]"),
    ("arms: [il_policy]\n", "P:1: `arms` must keep each stage-3 arm's baseline (il_baseline with il_policy, "
                            "rl_baseline with rl_policy), got [\"il_policy\"]"),
    ("arms: [il_baseline, sft]\n", "P:1: `arms[1]` must be one of 'il_baseline', 'il_policy', 'rl_baseline', "
                                   "'rl_policy' or 'early_experience', got \"sft\""),
    ("eval:\n  split: validation\n", "P:2: `eval.split` validation needs `alfworld.validation_games` > 0, got 0"),
    ("training:\n  vllm:\n    zz: 1\n", "P:3: unknown key `training.vllm.zz` (known: gpu_memory_utilization, mode, "
                                          "server_base_url, tensor_parallel_size, use_vllm)"),
    ("source: x.yaml\n", "P:1: unknown key `source` (known: act, ..."),  # set by load_config, not a YAML key
    ("sampling:\n  1: 2\n", "P:2: unknown key `sampling.1` (known: backend, ..."),
    # renamed key
    ("sampling:\n  fill_inadmissible: true\n",
     "P:2: `sampling.fill_inadmissible` was replaced by `sampling.policy` (fill_inadmissible: true is policy: "
     "free+random_fill)"),
    # wrong types
    ("sampling:\n  k: two\n", 'P:2: `sampling.k` must be an integer, got "two"'),
    ("sampling:\n  k: true\n", "P:2: `sampling.k` must be an integer, got true"),
    ("sampling:\n  k: 2.0\n", "P:2: `sampling.k` must be an integer, got 2.0"),
    ("sampling:\n  k: null\n", "P:2: `sampling.k` must be an integer, got null"),
    ("sampling:\n  temperature: hot\n", 'P:2: `sampling.temperature` must be a number, got "hot"'),
    ("sampling:\n  temperature: true\n", "P:2: `sampling.temperature` must be a number, got true"),
    ("act:\n  bf16: 1\n", "P:2: `act.bf16` must be true/false, got 1"),
    ("training:\n  vllm:\n    use_vllm: yes please\n",
     'P:3: `training.vllm.use_vllm` must be true/false, got "yes please"'),
    ("name: 3\n", "P:1: `name` must be a string, got 3"),
    ("alfworld:\n  task_types: pick\n", 'P:2: `alfworld.task_types` must be a list of strings, got "pick"'),
    ("alfworld:\n  task_types:\n    - pick\n    - 3\n", "P:4: `alfworld.task_types[1]` must be a string, got 3"),
    # out of range
    ("sampling:\n  k: 0\n", "P:2: `sampling.k` must be > 0, got 0"),
    ("threads: -1\n", "P:1: `threads` must be >= 0, got -1"),
    ("eval:\n  temperature: -0.1\n", "P:2: `eval.temperature` must be >= 0, got -0.1"),
    ("envs:\n  max_rss_mb: 0\n", "P:2: `envs.max_rss_mb` must be > 0, got 0"),
    ("sampling:\n  gpu_memory_utilization: 1.5\n", "P:2: `sampling.gpu_memory_utilization` must be in (0, 1], got 1.5"),
    ("training:\n  vllm:\n    gpu_memory_utilization: 0\n",
     "P:3: `training.vllm.gpu_memory_utilization` must be in (0, 1], got 0"),
    # enumerations
    ("model:\n  source: gguf\n", 'P:2: `model.source` must be smollm2-gguf, tiny-random or hf, got "gguf"'),
    ("model:\n  inference_dtype: fp16\n", 'P:2: `model.inference_dtype` must be float32 or bfloat16, got "fp16"'),
    ("alfworld:\n  expert: oracle\n", 'P:2: `alfworld.expert` must be handcoded or planner, got "oracle"'),
    ("sampling:\n  policy: greedy\n",
     'P:2: `sampling.policy` must be one of free, constrained, free+random_fill, free+constrained_fill, got "greedy"'),
    ("sampling:\n  backend: tgi\n", 'P:2: `sampling.backend` must be transformers or vllm, got "tgi"'),
    ("training:\n  launcher: slurm\n", 'P:2: `training.launcher` must be inprocess or accelerate, got "slurm"'),
    ("training:\n  vllm:\n    mode: remote\n", 'P:3: `training.vllm.mode` must be colocate or server, got "remote"'),
    # a section that is not a mapping
    ("seed: 0\nact: [1, 2]\n", "P:2: `act` must be a mapping, got [1, 2]"),
    ("training:\n  vllm: on\n", "P:2: `training.vllm` must be a mapping, got true"),
    ("- 1\n- 2\n", "P: `top level` must be a mapping, got [1, 2]"),
    # the first error by line, when there are several
    ("il:\n  max_steps: -1\nact:\n  zz: 1\n", "P:2: `il.max_steps` must be >= 0, got -1"),
    # across fields: the line where the key is in the file, none where it is not
    ("model:\n  source: hf\n", "P: `model.path` is required when `model.source` is hf, got null"),
    ("model:\n  source: hf\n  path: ''\n", 'P:3: `model.path` is required when `model.source` is hf, got ""'),
    ("act:\n  answer: pick\n", 'P:2: `act.answer` must be free or choice, got "pick"'),
    ("model:\n  thinking: true\nact:\n  answer: choice\n",
     "P:4: `act.answer` choice answers with one token and cannot think: set `model.thinking: false` or ..."),
    ("eval:\n  judgement: choice\n",
     "P:2: `eval.judgement` choice reads the answer token right after the prompt, so no arm may think first: ..."),
])
def test_errors_are_one_line_naming_file_line_and_key(tmp_path, text, expected):
    msg = _load_error(tmp_path, text)
    assert msg.startswith(expected[:-3]) if expected.endswith("...") else msg == expected, msg


def test_missing_accelerate_config_names_the_path(tmp_path):
    msg = _load_error(tmp_path, "training:\n  launcher: accelerate\n  accelerate_config: configs/accelerate/nope.yaml\n")
    assert msg.startswith('P:3: `training.accelerate_config` must be an existing file, got "configs/accelerate/nope.yaml"')
    assert str(REPO / "configs/accelerate/nope.yaml") in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_and_empty_section_are_the_defaults(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("")
    assert load_config(p).to_dict() == PipelineConfig().to_dict()
    p.write_text("act:\nsampling:\n  temperature: 1\n  constrained_temperature: 2\n")
    cfg = load_config(p)
    assert cfg.act == ACTConfig() and cfg.source == str(p)
    # a float field given an int holds a float (as the dataclasses did: the section hashes depend on it)
    assert type(cfg.sampling.temperature) is float and type(cfg.sampling.constrained_temperature) is float


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.name == name and cfg.source.endswith(f"{name}.yaml")
    assert "source" not in cfg.to_dict()
    cfg.source = "elsewhere.yaml"
    assert cfg.source == "elsewhere.yaml"


# section_hash of every section, from the dataclass implementation (main before the pydantic models):
# asset code versions depend on them, so they must not move
OLD_HASHES = {
    "default": {"name": "1080a60800d9e5bd", "seed": "5feceb66ffc86f38", "threads": "5feceb66ffc86f38",
                "model": "d2536194293dcdfa", "alfworld": "4ac1cc1ff49a9373", "sampling": "91258f3969f4e3b2",
                "pairs": "cbbcb7ab49eafe81", "act": "28b4ea9f16a641e2", "il": "f1887356e35c6bbf",
                "rl": "e6238e49fde75641", "training": "2c02bcb06988418f", "eval": "76b1f15145cec075",
                "scienceworld": "2a373637c71725a6", "envs": "2145dd0b817de523"},
    "smoke": {"name": "aaba7feeeca66ca2", "seed": "5feceb66ffc86f38", "threads": "6b86b273ff34fce1",
              "model": "be55fe75c87afa11", "alfworld": "b12ec73a2fd4e529", "sampling": "5fa160ae6c0993d6",
              "pairs": "cbbcb7ab49eafe81", "act": "14a96cc930147e7d", "il": "193936a2abac6dfd",
              "rl": "3b2b472ebbf1fdfb", "training": "2c02bcb06988418f", "eval": "d6e163552bd85b05",
              "scienceworld": "04f64770f397495f", "envs": "ee12b8d829ea9436"},
    "paper-qwen3-8b": {"name": "9a5eb25d265e31e1", "seed": "5feceb66ffc86f38", "threads": "5feceb66ffc86f38",
                       "model": "5a463a10dc842b1b", "alfworld": "4d51a65aa98ea5fc", "sampling": "4e048b9dcbf4d6ca",
                       "pairs": "d1107a90789d5425", "act": "a91e58771379f9a4", "il": "274a6358edda4c19",
                       "rl": "bebc3416b3b65880", "training": "9b88bb49da9b7e97", "eval": "ab30807fbefbc131",
                       "scienceworld": "1917c41ed796462d", "envs": "2203d22027416a22"},
    "gpu-qwen3-8b": {"name": "dfc6fe732edd2cd9", "seed": "5feceb66ffc86f38", "threads": "5feceb66ffc86f38",
                     "model": "5a463a10dc842b1b", "alfworld": "4d51a65aa98ea5fc", "sampling": "4e048b9dcbf4d6ca",
                     "pairs": "d1107a90789d5425", "act": "22ea35aaa17cf79e", "il": "274a6358edda4c19",
                     "rl": "bebc3416b3b65880", "training": "9b88bb49da9b7e97", "eval": "2813fdb929f21580",
                     "scienceworld": "1917c41ed796462d", "envs": "2145dd0b817de523"},
}


@pytest.mark.parametrize("name", PROFILES)
def test_section_hashes_are_unchanged(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    # `seeds` and `arms` came later; no asset's code version reads them (a seed is a partition key);
    # `transfer` too: only the transfer asset, absent unless enabled, reads it; and `early_experience`:
    # only the Early Experience assets, absent unless `arms` lists the arm, read it
    assert list(cfg.to_dict()) == [*OLD_HASHES[name], "seeds", "arms", "transfer", "early_experience"]
    assert {s: cfg.section_hash(s) for s in OLD_HASHES[name]} == OLD_HASHES[name]


def test_an_added_field_changes_the_hash_only_when_set(tmp_path):
    base = load_config(REPO / "configs" / "smoke.yaml")
    p = tmp_path / "p.yaml"
    p.write_text((REPO / "configs" / "smoke.yaml").read_text().replace("  generate_per_split: 3",
                                                                        "  generate_per_split: 3\n  validation_games: 2"))
    cfg = load_config(p)
    assert cfg.alfworld.validation_games == 2
    assert cfg.section_hash("alfworld") != base.section_hash("alfworld")
    assert {s: cfg.section_hash(s) for s in OLD_HASHES["smoke"] if s != "alfworld"} == \
        {s: base.section_hash(s) for s in OLD_HASHES["smoke"] if s != "alfworld"}


def test_sections_round_trip_through_a_training_job():
    # act_pipeline/training/launch.py rebuilds the sections from the job's JSON by keyword
    cfg = load_config(REPO / "configs" / "gpu-qwen3-8b.yaml")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert ACTConfig(**d["act"]) == cfg.act
    t = dict(d["training"], vllm=VLLMTrainConfig(**d["training"]["vllm"]))
    assert TrainingConfig(**t) == cfg.training
