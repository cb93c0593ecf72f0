"""The asset graph of a profile: the base model, each enabled benchmark's chain, the report."""

import dagster as dg

from act_pipeline.assets.alfworld import ALFWORLD, alfworld_assets
from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.chain import data_assets
from act_pipeline.assets.checks import checks_for
from act_pipeline.assets.early_experience import early_experience_assets
from act_pipeline.assets.evaluation import evaluation_asset, report_asset
from act_pipeline.assets.model import base_model_asset
from act_pipeline.assets.scienceworld import SCIENCEWORLD, scienceworld_assets
from act_pipeline.assets.training import training_assets
from act_pipeline.assets.transfer import transfer_asset
from act_pipeline.config import PipelineConfig

# benchmark -> the assets only it has (its games, ...); the rest of its chain is the same for all
_OWN = {ALFWORLD.name: alfworld_assets, SCIENCEWORLD.name: scienceworld_assets}


def benchmarks(cfg: PipelineConfig) -> list[Benchmark]:
    """The profile's benchmarks: ALFWorld always; ScienceWorld when ``scienceworld.enabled``."""
    return [ALFWORLD] + ([SCIENCEWORLD] if cfg.scienceworld.enabled else [])


def chain(b: Benchmark, cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    """One benchmark's assets: its games → trajectories → alternatives → pairs → arms → evaluation (and,
    with the Early Experience arm, alternatives → their outcomes → reflections → that arm)."""
    return [*_OWN[b.name](cfg), *data_assets(b, cfg), *early_experience_assets(b, cfg), *training_assets(b, cfg),
            evaluation_asset(b, cfg)]


def build_assets(cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    benches = benchmarks(cfg)
    # reasoning transfer (``transfer.enabled``): the checkpoints trained on ALFWorld, as in the paper's Table 2
    transfer = [transfer_asset(ALFWORLD, cfg)] if cfg.transfer.enabled else []
    return [base_model_asset(cfg), *(a for b in benches for a in chain(b, cfg)), *transfer, report_asset(benches, cfg)]


def build_checks(cfg: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    return [c for b in benchmarks(cfg) for c in checks_for(b, cfg)]
