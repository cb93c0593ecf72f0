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


def manifest_path(data_root: str | Path, key: dg.AssetKey) -> Path:
    return Path(data_root) / "manifests" / ("__".join(key.path) + ".json")


class JsonManifestIOManager(dg.ConfigurableIOManager):
    """Passes each asset's *manifest* (URIs, hashes, counts: a small JSON dict) downstream.

    Artifacts themselves live at the URIs the manifest names; no pickle is involved.
    """

    base_dir: str

    def _path(self, key: dg.AssetKey) -> Path:
        return manifest_path(self.base_dir, key)

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        write_json(self._path(context.asset_key), obj)

    def load_input(self, context: dg.InputContext) -> dict:
        path = self._path(context.asset_key)
        if not path.exists():
            raise FileNotFoundError(
                f"no manifest for asset {context.asset_key.to_user_string()} at {path}: materialize it first"
            )
        return json.loads(path.read_text())


def default_data_root() -> str:
    return os.environ.get("ACT_HOME", str(REPO_ROOT / ".act_home"))
