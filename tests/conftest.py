import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"


def _shared_alfworld() -> Path | None:
    env = os.environ.get("ALFWORLD_DATA")
    if env and (Path(env) / "json_2.1.1").is_dir():
        return Path(env)
    beside = REPO.parent / "shared" / "alfworld"
    return beside if (beside / "json_2.1.1").is_dir() else None


@pytest.fixture(scope="session")
def alfworld_data() -> Path:
    path = _shared_alfworld()
    if path is None:
        pytest.fail("real ALFWorld games are needed: set ALFWORLD_DATA (CI: ../shared/alfworld)")
    return path


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from act_pipeline.config import load_config
    from act_pipeline.training.models import resolve_base_model

    cfg = load_config(SMOKE)
    return resolve_base_model(cfg.model, cfg.seed, log=lambda m: None)
