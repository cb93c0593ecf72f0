"""deploy/dagster.yaml (the production instance) is valid against this Dagster's instance schema,
and its GPU limits name the tags and pool the code sets. (Postgres itself is not contacted: the
storage class lives in dagster-postgres, installed where the instance is deployed.)"""

from pathlib import Path

import pytest
import yaml

from act_pipeline.assets.common import GPU_TAG

from .conftest import DEFAULT, SMOKE

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"


def test_production_instance_config_is_valid(monkeypatch):
    from dagster._config import process_config
    from dagster._config.field import resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config_schema

    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB",
                "DAGSTER_ARTIFACTS_DIR", "DAGSTER_COMPUTE_LOGS_DIR"):
        monkeypatch.setenv(var, "x")
    cfg = yaml.safe_load(DEPLOY.read_text())
    result = process_config(resolve_to_config_type(dagster_instance_config_schema()), cfg)
    assert result.success, [e.message for e in result.errors]
    assert "postgres" in cfg["storage"]
    runs = cfg["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] >= 1
    assert {"key": "act-pipeline/device", "value": "gpu", "limit": 1} in runs["tag_concurrency_limits"]
    assert cfg["concurrency"]["pools"]["default_limit"] == 1


@pytest.mark.parametrize("profile", [DEFAULT, SMOKE], ids=["default", "smoke"])
def test_gpu_steps_carry_the_tag_and_pool(profile):
    from act_pipeline.assets.training import arms
    from act_pipeline.config import load_config
    from act_pipeline.definitions import make_definitions

    graph = make_definitions(str(profile), "/nonexistent-data-root").resolve_asset_graph()
    trained = arms(load_config(profile))
    # the model's steps: sampling, every arm the profile trains, Early Experience's reflections (the base
    # model writes them), the evaluation; the smoke profile has every arm, the default one no Early Experience
    steps = ("sampled_alternatives", *trained, *(["reflections"] if "early_experience" in trained else []),
             "evaluation")
    gpu = {f"{b}/{a}" for b in ("alfworld", "scienceworld") for a in steps}
    assert {"il_policy", "rl_policy"} <= set(trained)
    nodes = {k.to_user_string(): graph.get(k) for k in graph.materializable_asset_keys}
    # exactly these steps, each found in the graph: none missing (the default profile has both
    # benchmarks), none extra (a CPU step queued behind the GPU)
    pooled = {k for k, n in nodes.items() if n.pools}
    tagged = {k for k, n in nodes.items() if n.assets_def.op.tags.get(GPU_TAG) == "true"}
    assert pooled == gpu, (sorted(gpu - pooled), sorted(pooled - gpu))
    assert tagged == gpu, (sorted(gpu - tagged), sorted(tagged - gpu))
    assert {p for k in gpu for p in nodes[k].pools} == {"gpu"}
    # the pool the code names is limited by the production instance (no per-pool entry: the default limit)
    cfg = yaml.safe_load(DEPLOY.read_text())
    assert cfg["concurrency"]["pools"]["default_limit"] == 1


def test_the_embedded_default_stays_sqlite():
    cfg = yaml.safe_load((DEPLOY.parent.parent / "dagster.yaml").read_text())
    assert "sqlite" in cfg["storage"]
