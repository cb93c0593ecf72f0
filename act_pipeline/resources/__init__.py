"""Dagster resources: swappable interfaces over the plain-Python core."""


import json
import os
from pathlib import Path

import dagster as dg

from act_pipeline.config import REPO_ROOT, PipelineConfig, load_config
from act_pipeline.data.store import Warehouse
from act_pipeline.files import write_json


class ProfileResource(dg.ConfigurableResource):
    """The run profile (``configs/*.yaml``) and the data root everything is written under."""

    profile_path: str
    data_root: str

    def config(self) -> PipelineConfig:
        return load_config(self.profile_path)

    def root(self) -> Path:
        p = Path(self.data_root).expanduser()
        p.mkdir(parents=True, exist_ok=True)
        return p.resolve()

    def artifact_dir(self, asset: str, run_id: str) -> Path:
        """A fresh folder per (asset, run): artifacts are never overwritten, so lineage holds."""
        from act_pipeline.files import safe_join

        return safe_join(self.root(), "artifacts", asset, run_id, what="artifact folder")


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file; tables are views over Parquet artifacts."""

    path: str

    def get(self) -> Warehouse:
        return Warehouse(self.path)


def manifest_path(data_root: str | Path, key: dg.AssetKey, partition: str | None = None) -> Path:
    """``manifests/alfworld__games.json``; a partition's: ``manifests/alfworld__evaluation/<seed>.json``."""
    name = "__".join(key.path)
    base = Path(data_root) / "manifests"
    if partition is None:
        return base / f"{name}.json"
    from act_pipeline.files import safe_join

    return safe_join(base / name, f"{partition}.json", what="partition key")


class JsonManifestIOManager(dg.ConfigurableIOManager):
    """Passes each asset's *manifest* (URIs, hashes, counts: a small JSON dict) downstream.

    Artifacts themselves live at the URIs the manifest names; no pickle is involved. A partitioned
    asset (a training seed) has one manifest per partition; a partitioned step reads its own
    partition of a partitioned input, an unpartitioned one (the report) reads every materialized
    partition as {partition key: manifest}.
    """

    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        part = context.asset_partition_key if context.has_asset_partitions else None
        write_json(manifest_path(self.base_dir, context.asset_key, part), obj)

    def load_input(self, context: dg.InputContext) -> dict:
        key = context.asset_key
        if not context.has_asset_partitions:
            return self._read(manifest_path(self.base_dir, key), key)
        if context.has_partition_key:  # same seed
            return self._read(manifest_path(self.base_dir, key, context.partition_key), key)
        found = {p: manifest_path(self.base_dir, key, p) for p in context.asset_partition_keys}
        return {p: json.loads(path.read_text()) for p, path in found.items() if path.exists()}

    @staticmethod
    def _read(path: Path, key: dg.AssetKey) -> dict:
        if not path.exists():
            raise FileNotFoundError(f"no manifest for asset {key.to_user_string()} at {path}: materialize it first")
        return json.loads(path.read_text())


def default_data_root() -> str:
    return os.environ.get("ACT_HOME", str(REPO_ROOT / ".act_home"))
