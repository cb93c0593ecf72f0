"""Checkpoint folders carry a Hugging Face model card (README.md with front matter) and model_card.json."""

import json

import pytest
from huggingface_hub import ModelCard

from act_pipeline.training.card import write_model_card

H = {k: c * 64 for k, c in (("init", "a"), ("pairs", "b"), ("traj", "c"), ("act", "d"))}


def _card(asset="scienceworld/act_checkpoint", source="smollm2-gguf", **over):
    """A card dict as assets/training.py `_card` builds it, plus what training/common.py adds."""
    bench = asset.split("/")[0]  # every asset label carries its benchmark: alfworld/..., scienceworld/...
    stage = asset.split("/")[-1].split("_")[0]
    model = {"source": source, "path": None, "trust_remote_code": False, "thinking": False}
    if stage == "act":
        parents = {"init": {"uri": "/cache/models/SmolLM2-135M-Instruct", "hash": H["init"],
                            "name": "SmolLM2-135M-Instruct"},
                   "contrast_pairs": {"uri": f"/home/artifacts/{bench}/contrast_pairs/r1/pairs.parquet",
                                      "hash": H["pairs"], "rows": 92, "alternatives_hash": "e" * 64,
                                      "sampler_model": "/cache/models/SmolLM2-135M-Instruct"}}
    else:
        parents = {"init": {"uri": f"/home/artifacts/{asset}/r1/model", "hash": H["act"]},
                   "expert_trajectories": {"uri": f"/home/artifacts/{bench}/expert_trajectories/r1/t.parquet",
                                           "hash": H["traj"], "rows": 140}}
    card = {"asset": asset, "description": "Stage 2: GRPO (TRL) on the critic prompt.", "parents": parents,
            "config": {stage: {"learning_rate": 1e-6, "max_steps": 12}, bench: {"history_len": 3}, "model": model},
            "profile": "configs/default.yaml", "code_version": "cv123", "dagster_run_id": "run-42",
            "global_step": 12, "resumed_from": f"/home/trainer_state/{asset}/0123/checkpoint-6"}
    return {**card, **over}


def test_card_round_trips_through_huggingface_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    card = _card()
    write_model_card(tmp_path, card)
    hub = ModelCard.load(tmp_path / "README.md")
    d = hub.data
    assert d.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert d.library_name == "transformers" and d.pipeline_tag == "text-generation" and d.license == "apache-2.0"
    assert {"act-pipeline", "agentic-critical-training", "act", "scienceworld"} <= set(d.tags)
    assert d.datasets == ["scienceworld"]
    body = hub.text
    assert H["init"] in body and H["pairs"] in body  # the parents' content hashes
    assert "**Global step**: 12" in body and "checkpoint-6" in body
    for section in ("## How it was made", "## Lineage", "## Config", "## Environment", "## How to load"):
        assert section in body
    assert "AutoModelForCausalLM.from_pretrained(folder)" in body
    assert '"max_steps": 12' in body  # the config JSON
    # model_card.json: the dict as given, plus the environment (act-pipeline lineage reads it)
    saved = json.loads((tmp_path / "model_card.json").read_text())
    assert {k: saved[k] for k in card} == json.loads(json.dumps(card))
    assert set(saved) == set(card) | {"packages", "git_commit"} and "transformers" in saved["packages"]


@pytest.mark.parametrize("asset,stage,bench", [("alfworld/il_policy", "il", "alfworld"),
                                               ("scienceworld/rl_baseline", "rl", "scienceworld")])
def test_stage_and_benchmark_tags(tmp_path, asset, stage, bench):
    write_model_card(tmp_path, _card(asset))
    d = ModelCard.load(tmp_path / "README.md").data
    assert stage in d.tags and bench in d.tags and d.datasets == [bench]
    assert d.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"  # the root model, though init is a local folder
    assert H["traj"] in (tmp_path / "README.md").read_text()


def test_local_only_base_model_is_omitted(tmp_path):
    write_model_card(tmp_path, _card(source="tiny-random"))
    d = ModelCard.load(tmp_path / "README.md").data
    assert d.base_model is None and d.license is None
    assert "base_model" not in d.to_dict() and "/cache/models" not in d.to_yaml()


def test_hub_id_from_hf_source(tmp_path):
    card = _card()
    card["config"]["model"].update(source="hf", path="Qwen/Qwen3-8B")
    card["parents"]["init"].update(uri="Qwen/Qwen3-8B", name="Qwen3-8B")
    write_model_card(tmp_path, card)
    d = ModelCard.load(tmp_path / "README.md").data
    assert d.base_model == "Qwen/Qwen3-8B" and d.license is None


def test_markdown_for_dagster_has_no_front_matter(tmp_path):
    from act_pipeline.training.card import card_markdown

    assert card_markdown(tmp_path) is None
    write_model_card(tmp_path, _card())
    md = card_markdown(tmp_path)
    assert md.startswith("# scienceworld/act_checkpoint") and "base_model:" not in md and H["pairs"] in md
