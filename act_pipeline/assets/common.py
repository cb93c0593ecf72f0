"""What every asset module shares: the GPU step tags, lineage records, outputs and metadata."""

import base64
from pathlib import Path

import dagster as dg
import pyarrow as pa

from act_pipeline.config import PipelineConfig
from act_pipeline.files import write_json

# the steps that use the GPUs (all of them, on a GPU profile); see definitions.py and deploy/dagster.yaml
GPU_TAG = "act-pipeline/gpu"
GPU_STEP = {"op_tags": {GPU_TAG: "true"}, "pool": "gpu"}


def seed_partitions(cfg: PipelineConfig) -> dg.StaticPartitionsDefinition | None:
    """The training seeds as a static partition (one key per seed) of every training arm and the
    evaluation; None when the profile lists no ``seeds`` (the graph is then unpartitioned)."""
    return dg.StaticPartitionsDefinition([str(s) for s in cfg.seeds]) if cfg.seeds else None


def latest_materialization(instance, key, partition: str | None = None):
    """The latest materialization record of ``key`` (of one partition of it, given ``partition``),
    or None."""
    res = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None), limit=1)
    return res.records[0] if res.records else None


def partition_seed(context) -> int | None:
    """The training seed of a partitioned step (its partition key), else None."""
    return int(context.partition_key) if context.has_partition_key else None


def setup_torch(cfg: PipelineConfig) -> None:
    import torch

    from act_pipeline.machine import tune_malloc

    tune_malloc()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def lineage(context: dg.AssetExecutionContext, path: Path, parents: dict[str, dict], **extra) -> None:
    """A lineage.json beside a data artifact: which artifacts (URI + hash) it was made from."""
    doc = {"asset": context.asset_key.to_user_string(), "uri": str(path), "dagster_run_id": context.run_id,
           "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
           "parents": {k: {"uri": v["uri"], "hash": v["hash"]} for k, v in parents.items()}, **extra}
    write_json(Path(path).parent / "lineage.json", doc)


def preview(rows: list[dict], cols: list[str], limit: int = 10) -> dg.MetadataValue:
    """The first rows of a table as Dagster table metadata (shown as a table in the UI)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in cols])
    records = [dg.TableRecord({c: str(r.get(c, ""))[:80] for c in cols}) for r in rows[:limit]]
    return dg.MetadataValue.table(records, schema=schema)


def value_counts(table: pa.Table, col: str) -> dict:
    if not table.num_rows:
        return {}
    vc = table.column(col).value_counts()
    return {k: int(n) for k, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())}


def output(manifest: dict, h: str, **metadata) -> dg.Output[dict]:
    """The manifest passed downstream (URIs, hashes, counts), its data version (the content hash)
    and its metadata; ``rows`` becomes Dagster's ``dagster/row_count``."""
    md = {"content_hash": h, **({"uri": dg.MetadataValue.path(str(manifest["uri"]))} if "uri" in manifest else {})}
    if "rows" in manifest:
        md["dagster/row_count"] = int(manifest["rows"])
    md.update({k: v for k, v in metadata.items() if v is not None})
    return dg.Output(manifest, data_version=dg.DataVersion(h[:16]), metadata=md)


def png_md(path: Path) -> dg.MetadataValue:
    """A PNG inlined as markdown (the UI shows it in the materialization's metadata)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{Path(path).stem}](data:image/png;base64,{data})")


def games_output(context, path, rows: list[dict], h: str, source: str, splits) -> dg.Output[dict]:
    """A benchmark's games manifest (every benchmark's games asset ends here)."""
    lineage(context, path, {}, hash=h, source=source)
    counts = {s: sum(r["split"] == s for r in rows) for s in splits}
    context.log.info(f"games: {counts} from {source}")
    return output({"uri": str(path), "hash": h, "source": source, "counts": counts, "rows": len(rows)}, h,
                  source=source, **{f"games_{k}": v for k, v in counts.items()},
                  preview=preview(rows, ["game_id", "split", "task_type", "roles"]))
