"""Cross-size reuse (the paper's 8B -> 4B): alternatives sampled by one model train another, and the
lineage says whose samples trained whom."""

import json

import dagster as dg
import pyarrow as pa
import yaml

from act_pipeline.assets.graph import build_assets
from act_pipeline.cli import lineage_tree
from act_pipeline.config import load_config
from act_pipeline.data.store import write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.definitions import build_resources
from act_pipeline.models import build_tiny_random, model_cache_dir
from act_pipeline.files import dir_hash

from .conftest import SMOKE, graph_config
from .test_incremental import _states


def test_pairs_sampled_by_another_model_train_the_base_model(tmp_path, tiny_model):
    # the "other size": a tiny Llama of another width, sharing the tokenizer
    cfg = load_config(SMOKE)
    cfg.model.hidden_size = 96
    other = tmp_path / "sampler-model"
    build_tiny_random(model_cache_dir() / "SmolLM2-135M-Instruct", other, cfg.model, 1)
    prof = yaml.safe_load(SMOKE.read_text())
    prof["sampling"]["model_path"] = str(other)
    profile = tmp_path / "cross.yaml"
    profile.write_text(yaml.safe_dump(prof))

    home = tmp_path / "home"
    t = write_parquet_atomic(pa.Table.from_pylist(_states(12), TRAJECTORY_SCHEMA), home / "t.parquet")
    (home / "manifests").mkdir(parents=True)
    (home / "manifests" / "alfworld__expert_trajectories.json").write_text(json.dumps({"uri": str(t), "hash": "t12"}))
    (home / "manifests" / "base_model.json").write_text(json.dumps({"uri": tiny_model, "hash": dir_hash(tiny_model)}))
    chain = ("sampled_alternatives", "contrast_pairs", "act_checkpoint")
    res = dg.materialize(build_assets(graph_config()), selection=[f"alfworld/{a}" for a in chain],
                         resources=build_resources(str(profile), str(home)), instance=dg.DagsterInstance.ephemeral())
    assert res.success
    m = {a: json.loads((home / "manifests" / f"alfworld__{a}.json").read_text()) for a in chain}
    assert m["sampled_alternatives"]["sampler_model"] == str(other)
    assert m["sampled_alternatives"]["sampler_model_hash"] == dir_hash(other) != dir_hash(tiny_model)
    card = json.loads((home / "manifests" / "alfworld__act_checkpoint.json").read_text())
    card = json.loads((__import__("pathlib").Path(card["uri"]) / "model_card.json").read_text())
    assert card["parents"]["init"]["uri"] == tiny_model  # trained: the base model ...
    assert card["parents"]["contrast_pairs"]["sampler_model"] == str(other)  # ... on the other model's samples
    tree = "\n".join(lineage_tree(m["act_checkpoint"]["uri"]))
    assert "<- sampler_model" in tree and str(other) in tree
