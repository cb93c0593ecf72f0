"""Model cards: what made a checkpoint, written inside the checkpoint folder.

Two files: ``model_card.json`` (the card dict as given, plus package versions and the git commit;
``act-pipeline lineage`` reads it) and ``README.md``, a Hugging Face model card made with
``huggingface_hub``'s :class:`~huggingface_hub.ModelCard`: YAML front matter (``base_model``,
``library_name``, ``tags``, ``datasets``, ``pipeline_tag``, ``license`` when known) and a body
with how the checkpoint was made, its lineage, config and environment, and how to load it.
Nothing here touches the network (works with ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

from act_pipeline.config import REPO_ROOT

ENV_PACKAGES = ("torch", "transformers", "trl", "alfworld", "textworld", "scienceworld", "dagster", "duckdb")

# stage (first word of the asset name: act_checkpoint, il_policy, rl_baseline, ...) -> what it is
STAGES = {
    "act": "ACT (Agentic Critical Training): GRPO on contrast pairs, the model judges which of two "
           "actions is the better one",
    "il": "imitation learning: SFT on the won expert steps",
    "rl": "reinforcement learning: GRPO on next-action generation over the expert states",
    "ee": "Early Experience (self-reflection): SFT on the won expert steps, each target the model's own "
          "reflection on what the expert action and the alternatives led to when executed, then the expert action",
}
# assets whose stage is not their name's first word
ASSET_STAGES = {"early_experience": "ee"}
BENCHMARKS = ("alfworld", "scienceworld")
# `model.source` values whose base model is a known Hugging Face Hub model
SOURCE_HUB_IDS = {"smollm2-gguf": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# hub id prefix -> license of the base model (only what we know; otherwise no license field)
LICENSES = {"HuggingFaceTB/SmolLM2-": "apache-2.0"}


def package_versions(names: tuple[str, ...] = ENV_PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def write_model_card(folder: Path, card: dict) -> None:
    folder = Path(folder)
    card = {**card, "packages": package_versions(), "git_commit": git_commit()}
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    hub_card(card).save(folder / "README.md")


def card_markdown(folder: Path) -> str | None:
    """The README.md body without its YAML front matter (for Markdown viewers such as Dagster's UI)."""
    from huggingface_hub import ModelCard

    readme = Path(folder) / "README.md"
    return ModelCard.load(readme).text.lstrip("\n") if readme.is_file() else None


# --------------------------------------------------------------------------- Hugging Face card


def hub_card(card: dict):
    """The Hugging Face :class:`~huggingface_hub.ModelCard` for a card dict (front matter + body)."""
    from huggingface_hub import ModelCard

    data = card_data(card)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(card, data)}")


def card_data(card: dict):
    """The front matter: what the Hub indexes (base model, library, tags, datasets, task, license).

    >>> d = card_data({"asset": "scienceworld/il_policy", "config": {"model": {"source": "smollm2-gguf"}}})
    >>> d.base_model, d.license, d.datasets
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 'apache-2.0', ['scienceworld'])
    >>> d.tags
    ['act-pipeline', 'agentic-critical-training', 'il', 'scienceworld']
    >>> d = card_data({"asset": "act_checkpoint",
    ...                "config": {"act": {}, "alfworld": {}, "model": {"source": "tiny-random"}}})
    >>> d.base_model is None and d.license is None, d.tags[2:], d.library_name, d.pipeline_tag
    (True, ['act', 'alfworld'], 'transformers', 'text-generation')
    """
    from huggingface_hub import ModelCardData

    base, bench, stage = base_model_id(card), benchmark(card), stage_of(card)
    license_ = next((lic for prefix, lic in LICENSES.items() if base and base.startswith(prefix)), None)
    return ModelCardData(
        base_model=base, library_name="transformers", pipeline_tag="text-generation", license=license_,
        tags=[t for t in ("act-pipeline", "agentic-critical-training", stage, bench) if t],
        datasets=[bench] if bench else None,
    )


def stage_of(card: dict) -> str | None:
    """``act`` / ``il`` / ``rl`` / ``ee``: from the asset name, else from the stage config section present.

    >>> stage_of({"asset": "scienceworld/rl_baseline"}), stage_of({"asset": "x", "config": {"il": {}}})
    ('rl', 'il')
    >>> stage_of({"asset": "alfworld/early_experience", "config": {"il": {}, "early_experience": {}}})
    'ee'
    """
    if _asset_name(card) in ASSET_STAGES:
        return ASSET_STAGES[_asset_name(card)]
    word = _asset_name(card).split("_")[0]
    if word in STAGES:
        return word
    return next((s for s in STAGES if s in (card.get("config") or {})), None)


def benchmark(card: dict) -> str | None:
    """``alfworld`` / ``scienceworld``: the asset label's prefix (``scienceworld/act_checkpoint``),
    else the benchmark config section present (cards written before every key had its prefix).

    >>> benchmark({"asset": "scienceworld/act_checkpoint"})
    'scienceworld'
    >>> benchmark({"asset": "il_policy", "config": {"alfworld": {}}})
    'alfworld'
    """
    parts = str(card.get("asset") or "").split("/")
    if len(parts) > 1 and parts[0] in BENCHMARKS:
        return parts[0]
    return next((b for b in BENCHMARKS if b in (card.get("config") or {})), None)


def base_model_id(card: dict) -> str | None:
    """The base model's Hugging Face Hub id, or None when only a local path is known (a local path
    is never written as ``base_model``). Tried in order: the init parent's name, the profile's
    ``model.path`` (``source: hf``), the known hub id of ``model.source`` (``smollm2-gguf``).

    >>> base_model_id({"parents": {"init": {"name": "SmolLM2-135M-Instruct", "uri": "/cache/SmolLM2-135M-Instruct"}},
    ...                "config": {"model": {"source": "smollm2-gguf"}}})
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    >>> base_model_id({"config": {"model": {"source": "hf", "path": "Qwen/Qwen3-8B"}}})
    'Qwen/Qwen3-8B'
    >>> base_model_id({"config": {"model": {"source": "hf", "path": "/models/qwen"}}}) is None
    True
    """
    init = (card.get("parents") or {}).get("init") or {}
    model = (card.get("config") or {}).get("model") or {}
    cands = [init.get("name"), model.get("path") if model.get("source") == "hf" else None,
             SOURCE_HUB_IDS.get(model.get("source"))]
    return next((c for c in cands if _is_hub_id(c)), None)


def _is_hub_id(name) -> bool:
    """``owner/name`` that is a valid repo id and not a folder here."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str) or name.count("/") != 1 or name.startswith((".", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not Path(name).exists()


def _asset_name(card: dict) -> str:
    return str(card.get("asset") or "checkpoint").split("/")[-1]


def _cell(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
    return f"`{s}`".replace("|", "\\|").replace("\n", " ")


def _body(card: dict, data) -> str:
    parents = card.get("parents") or {}
    init = parents.get("init") or {}
    stage, bench = stage_of(card), benchmark(card)
    model_cfg = (card.get("config") or {}).get("model") or {}
    asset = card.get("asset") or "checkpoint"
    out = [f"# {asset}", ""]
    if card.get("description"):
        out += [card["description"], ""]
    out += [f"A checkpoint made by act-pipeline (Agentic Critical Training as a Dagster project): the asset "
            f"`{asset}`{f' on {bench}' if bench else ''}.", ""]

    out += ["## How it was made", ""]
    if stage:
        out.append(f"- **Stage**: `{stage}`, {STAGES[stage]}")
    if bench:
        out.append(f"- **Benchmark**: {bench}")
    if init:
        what = f"`{init.get('uri')}`" + (f" ({init['name']})" if init.get("name") else "")
        out.append(f"- **Initialised from**: {what}, content hash `{init.get('hash')}`")
    if data.base_model:
        hub = data.base_model
        out.append(f"- **Base model** (Hugging Face Hub): [{hub}](https://huggingface.co/{hub})")
    elif model_cfg.get("source"):
        out.append(f"- **Base model**: `model.source: {model_cfg['source']}` (no Hub id)")
    for k, p in parents.items():
        if k == "init":
            continue
        extra = ", ".join(f"{f} `{p[f]}`" for f in sorted(p) if f not in ("uri", "hash"))
        out.append(f"- **Trained on** `{k}`: `{p.get('uri')}`, content hash `{p.get('hash')}`"
                   + (f" ({extra})" if extra else ""))
    if "global_step" in card:
        out.append(f"- **Global step**: {card['global_step']}")
    if "resumed_from" in card:
        r = card["resumed_from"]
        out.append(f"- **Resumed from**: `{r}`" if r else "- **Resumed**: no, trained in one go")
    if card.get("reused_from"):  # the same training (same start, data, settings, code) done before
        out.append(f"- **Not trained again**: the same training was done for `{card['reused_from']}`; its "
                   "weights, config, tokenizer and training log are linked here (`act_pipeline.training.cache`)")
    for key, label in (("profile", "Profile"), ("code_version", "Code version"), ("dagster_run_id", "Dagster run")):
        if card.get(key):
            out.append(f"- **{label}**: `{card[key]}`")
    out.append("")

    out += ["## Lineage", "", "| parent | uri | content hash | details |", "|---|---|---|---|"]
    for k, p in parents.items():
        details = ", ".join(f"{f}: {_cell(p[f])}" for f in sorted(p) if f not in ("uri", "hash")) or ""
        out.append(f"| {k} | {_cell(p.get('uri'))} | {_cell(p.get('hash'))} | {details} |")
    out.append("")

    out += ["## Config", "", "```json", json.dumps(card.get("config", {}), indent=2, sort_keys=True, default=str),
            "```", ""]

    out += ["## Environment", "", "| package | version |", "|---|---|"]
    out += [f"| {k} | {_cell(v) if v else 'not installed'} |" for k, v in (card.get("packages") or {}).items()]
    out += ["", f"git commit: `{card.get('git_commit')}`", ""]

    trc = ", trust_remote_code=True" if model_cfg.get("trust_remote_code") else ""
    out += ["## How to load", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            'folder = "path/to/this/folder"  # the folder holding this README.md',
            f"tokenizer = AutoTokenizer.from_pretrained(folder{trc})",
            f"model = AutoModelForCausalLM.from_pretrained(folder{trc})", "```", ""]
    return "\n".join(out)
