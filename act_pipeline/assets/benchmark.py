"""A benchmark as the asset graph sees it: its key prefix and what differs between benchmarks.

Every benchmark gets the same chain of assets (``chain.py``): ``<name>/games`` (its own
module: ``alfworld.py``, ``scienceworld.py``) → ``<name>/expert_trajectories`` →
``<name>/sampled_alternatives`` → ``<name>/contrast_pairs`` → ``<name>/act_checkpoint`` → the
stage-3 arms → ``<name>/evaluation``. What differs is data, not code paths: the environment
class played by the env workers, its settings, the held-out split, the games played for
success rates, and whether users can import expert steps.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from act_pipeline.config import PipelineConfig


@dataclass(frozen=True)
class Benchmark:
    name: str  # key prefix, Dagster group and the profile section with its settings (history_len, ...)
    heldout_split: str  # the split whose expert states and pairs are held out for evaluation
    env_factory: str  # "module:Class" of one game, opened in the env workers
    env_modules: tuple[str, ...]  # core modules that define its games (they version games and trajectories)
    env_kwargs: Callable[[PipelineConfig, bool], dict]  # (profile, play the expert?) -> env_factory kwargs
    expert: Callable[[PipelineConfig], str]  # what plays the expert (recorded in lineage)
    # split -> games the evaluation plays to completion for success rates (None: no roll-outs)
    rollout_games: Callable[[PipelineConfig, list[dict]], dict[str, list[dict]]] | None = None
    imports: bool = False  # users can import expert steps (`<name>/imported_expert_steps`)
    # a game's content hash (of the files playing it reads) for the expert cache, from its games row;
    # None: the expert plays every game every time (a stochastic expert: ScienceWorld's gold paths)
    game_hash: Callable[[dict], str] | None = None
    expert_packages: tuple[str, ...] = ()  # distributions that play the expert: their versions key the cache

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    def label(self, asset: str) -> str:  # artifact folders and model cards
        return f"{self.name}/{asset}"

    def view(self, asset: str) -> str:  # DuckDB view names
        return f"{self.name}_{asset}"

    def ins(self, *assets: str) -> dict[str, dg.AssetIn]:
        return {a: dg.AssetIn(key=self.key(a)) for a in assets}

    def settings(self, cfg: PipelineConfig):
        return getattr(cfg, self.name)

    def eval_split(self, cfg: PipelineConfig) -> str:
        """The split the evaluation and the ACT probe score: the held-out split, or the validation
        games carved from train when the profile tunes (``eval.split: validation``)."""
        return "validation" if cfg.eval.split == "validation" else self.heldout_split

    def history_len(self, cfg: PipelineConfig) -> int:
        return self.settings(cfg).history_len
