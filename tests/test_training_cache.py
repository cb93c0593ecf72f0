"""A training whose starting tensors, data, settings and code equal one done before is not run again
(``act_pipeline.training.cache``), and what it links is what training again would have saved.

Real TRL SFT on the tiny model; the starting folder of the second arm is a different folder with the
same tensors (saved again by transformers with ``use_cache: false`` and another ``transformers_version``,
a model card and a training log beside it), as an ACT checkpoint that learnt nothing is to the base model."""

import json
import os
from pathlib import Path

import pytest

from act_pipeline.config import ILConfig
from act_pipeline.files import dir_hash
from act_pipeline.training.cache import TrainingCache, model_identity, training_key

ROW = {"task": "put a mug in the sink.", "observation": "You see a sink 1.", "history": [],
       "admissible": ["go to sink 1", "look", "inventory"], "expert_action": "go to sink 1"}
ROWS = [ROW, dict(ROW, observation="You are in the middle of a room.", expert_action="look")] * 2
CFG = ILConfig(max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3)
JOB = {"stage": "il", "filters": {"split": "train", "won": True}, "config": CFG.model_dump(), "training": {},
       "history_len": 3, "thinking": False, "trust_remote_code": False}


def _resaved(src: str, dst: Path, perturb: bool = False) -> Path:
    """``src``'s model saved again by transformers (another file, the same tensors unless ``perturb``),
    with the bookkeeping a trained checkpoint carries."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    if perturb:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3
    model.config.use_cache = False  # as a trainer saves it (transformers' Trainer sets it before training)
    model.save_pretrained(dst, safe_serialization=True)
    # and as another transformers release would write it (a base model converted once by an older one)
    for name in ("config.json", "generation_config.json"):
        doc = json.loads((dst / name).read_text())
        (dst / name).write_text(json.dumps({**doc, "transformers_version": "0.0.0-other"}, indent=2))
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    (dst / "model_card.json").write_text(json.dumps({"asset": "act_checkpoint"}))
    (dst / "train_log.json").write_text("[]")
    return dst


def _sft(init: str, out: Path, calls: list, card: dict | None = None) -> dict:
    from act_pipeline.training.sft import train_sft

    calls.append(init)
    res = train_sft(init, ROWS, out, CFG, log=lambda m: None, card=card)
    return {**res, "content_hash": dir_hash(out)}


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


BASE_CARD = {"asset": "alfworld/il_baseline"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """The base-model arm trained through the cache (a miss), then the arm from the re-saved copy (a hit)."""
    tmp = tmp_path_factory.mktemp("training_cache")
    copy = _resaved(tiny_model, tmp / "act_checkpoint")
    cache, calls, logs = TrainingCache(tmp / "cache"), [], []
    k_base = training_key(JOB, model_identity(tiny_model), "data0", "v1", threads=1)
    k_copy = training_key(JOB, model_identity(copy), "data0", "v1", threads=1)
    first = cache.run(k_base, tmp / "il_baseline", lambda: _sft(tiny_model, tmp / "il_baseline", calls, BASE_CARD),
                      BASE_CARD, logs.append)
    second = cache.run(k_copy, tmp / "il_policy", lambda: _sft(str(copy), tmp / "il_policy", calls),
                       {"asset": "alfworld/il_policy"}, logs.append)
    return {"tmp": tmp, "copy": copy, "cache": cache, "calls": calls, "logs": logs, "keys": (k_base, k_copy),
            "first": first, "second": second}


def test_same_tensors_saved_differently_are_the_same_start(trained, tiny_model):
    assert json.loads((trained["copy"] / "config.json").read_text())["use_cache"] is False
    assert json.loads((Path(tiny_model) / "config.json").read_text()).get("use_cache", True) is True
    assert dir_hash(trained["copy"]) != dir_hash(tiny_model)  # other files ...
    assert model_identity(trained["copy"]) == model_identity(tiny_model)  # ... the same model
    assert trained["keys"][0] == trained["keys"][1]


def test_the_second_arm_links_the_first_and_does_not_train(trained):
    tmp, first, second = trained["tmp"], trained["first"], trained["second"]
    assert trained["calls"] == [trained["calls"][0]] and "reused_from" not in first  # trained once
    assert second["reused_from"] == str(tmp / "il_baseline")
    assert second["global_step"] == first["global_step"] == CFG.max_steps
    assert second["log_history"] == first["log_history"]
    a, b = tmp / "il_baseline", tmp / "il_policy"
    assert second["content_hash"] == first["content_hash"] == dir_hash(b)  # the evaluation's cache key too
    assert os.stat(a / "model.safetensors").st_ino == os.stat(b / "model.safetensors").st_ino  # no bytes written
    # each arm's own card: its lineage, and where the weights come from
    assert json.loads((b / "model_card.json").read_text())["asset"] == "alfworld/il_policy"
    assert json.loads((b / "model_card.json").read_text())["reused_from"] == str(a)
    assert json.loads((a / "model_card.json").read_text())["asset"] == "alfworld/il_baseline"
    assert "Not trained again" in (b / "README.md").read_text()
    assert any("not trained again" in m for m in trained["logs"])


def test_what_is_linked_is_what_training_again_saves(trained):
    """The identity the cache rests on: the same SFT from the re-saved copy, run for real, saves the
    same tensors bit for bit as the linked checkpoint."""
    import torch

    calls = []
    again = trained["tmp"] / "il_policy_trained"
    _sft(str(trained["copy"]), again, calls)
    linked, fresh = _weights(trained["tmp"] / "il_policy"), _weights(again)
    assert linked.keys() == fresh.keys()
    assert all(torch.equal(linked[k], fresh[k]) for k in linked)
    base = _weights(Path(trained["copy"]))
    assert any(not torch.equal(linked[k], base[k]) for k in linked)  # and training did change them
    assert model_identity(again) == model_identity(trained["tmp"] / "il_policy")


def test_other_start_other_settings_or_a_lost_folder_train(trained, tiny_model, tmp_path):
    """A start one value away, another seed or data hash: other keys. A recorded folder that is gone
    or changed is no hit: that arm trains."""
    perturbed = _resaved(tiny_model, tmp_path / "perturbed", perturb=True)
    k = trained["keys"][0]
    assert training_key(JOB, model_identity(perturbed), "data0", "v1", threads=1) != k
    assert training_key({**JOB, "config": {**JOB["config"], "seed": 1}}, model_identity(tiny_model), "data0", "v1",
                        threads=1) != k
    assert training_key(JOB, model_identity(tiny_model), "data1", "v1", threads=1) != k
    assert training_key(JOB, model_identity(tiny_model), "data0", "v2", threads=1) != k
    assert training_key(JOB, model_identity(tiny_model), "data0", "v1", threads=2) != k

    cache = TrainingCache(tmp_path / "cache")
    cache.store("k", tmp_path / "gone", {"content_hash": "0" * 64, "global_step": 3})
    with cache.entry("k") as found:
        assert found is None
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "config.json").write_text("{}")
    cache.store("k2", changed, {"content_hash": dir_hash(changed), "global_step": 3})
    with cache.entry("k2") as found:
        assert found is not None
    (changed / "config.json").write_text('{"a": 1}')
    with cache.entry("k2") as found:
        assert found is None


def test_act_that_moves_nothing_saves_the_model_it_started_from(tmp_path, tiny_model):
    """ACT at learning rate 0, with its held-out probe running (batched, padded generation), saves a
    checkpoint whose identity is the starting model's: the same tensors, and the tokenizer as loaded
    (the probe's padding state does not leak into the saved tokenizer.json)."""
    from act_pipeline.config import ACTConfig
    from act_pipeline.training.act_grpo import train_act

    pair = dict(ROW, action_1="go to sink 1", action_2="look", expert_slot=1, split="train")
    rows = [pair, dict(pair, action_1="look", action_2="go to sink 1", expert_slot=2)] * 2
    out = tmp_path / "act"
    train_act(tiny_model, rows, out, ACTConfig(max_steps=2, per_device_train_batch_size=4, num_generations=4,
                                               max_completion_length=4, learning_rate=0.0, probe_every=1,
                                               probe_pairs=2),
              log=lambda m: None, heldout=[dict(r, split="valid_unseen") for r in rows[:2]])
    assert json.loads((out / "tokenizer.json").read_text()).get("padding") is None
    assert model_identity(out) == model_identity(tiny_model)
