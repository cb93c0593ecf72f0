"""A training done before is not done again: trained checkpoints kept by what defines them.

A stage's checkpoint is a function of what it starts from, what it trains on, its settings, the
code and the libraries (training here is deterministic: ``tests/test_training_cache.py`` trains the
same job twice and gets the same tensors). :func:`training_key` hashes exactly those:

- the starting model as training loads it (:func:`model_identity`): every tensor's name, dtype,
  shape and values, and every other model file (config, generation config, tokenizer, chat
  template) byte for byte; not the files that only record how a folder was made (model card,
  training log, source note), nor ``use_cache`` in the config, which the trainer sets itself before
  training, nor the ``transformers_version`` that wrote a config; so a checkpoint that holds the
  base model's tensors *is* the base model here, whichever file layout it was saved with;
- the data file's content hash and the stage's row filter;
- the job's settings: the stage's section (its training seed included), ``training:``, history
  length, thinking, the held-out probe, the torch threads;
- the arm's code version (its modules and settings) and the versions of torch, transformers, trl
  and accelerate.

When a key was trained before in this data root and its folder is still there with the same
content hash, :class:`TrainingCache` links that folder's files into the new checkpoint folder
(hard links: no bytes written; a copy where links cannot be made) and writes the new arm's own
model card; the new folder's content hash (``files.dir_hash``) equals the old one's, so the
evaluation's cache scores it once too. Two processes asking for the same key at once: the second
waits for the first (a file lock) and then reuses its result.

Where this matters: an ACT stage that learns nothing (every GRPO group's rewards equal, as the
default profile's free-form critic on SmolLM2-135M) saves the base model's tensors, so IL and RL
from the ACT checkpoint are the same trainings as IL and RL from the base model. ``training.reuse:
false`` trains every arm regardless.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from act_pipeline.files import MODEL_BOOKKEEPING, MODEL_FILE_SUFFIXES, atomic_dir, dir_hash, key_lock, write_json

Log = Callable[[str], None]
# files written beside a model that training never loads: how the folder was made
NOT_LOADED = MODEL_BOOKKEEPING | {"train_log.json", "README.md"}
# config fields that transformers' Trainer sets on the model before training from its own arguments
# (`model.config.use_cache = args.use_cache`, False), whatever the starting folder says: a trained
# checkpoint is saved with `use_cache: false`, the base model has true, and training from either is the same
TRAINER_SET = ("use_cache",)
# what transformers writes into config.json / generation_config.json about itself when it saves: the
# version of the library that wrote the file (a base model converted once by an older transformers
# says so); loading does not act on it, and the version that trains is in the key (`package_versions`)
WRITER_FIELDS = ("transformers_version",)
# the card files each arm writes for itself (its own lineage); every other file of a reused folder is linked
OWN_FILES = {"README.md", "model_card.json"}
# the job fields that define what a training computes (out_dir, work_dir and the card only say where and why)
JOB_FIELDS = ("stage", "filters", "config", "training", "history_len", "thinking", "trust_remote_code", "probe")
LIBRARIES = ("torch", "transformers", "trl", "accelerate")


def model_identity(folder: str | Path) -> str:
    """What training loads from a model folder, hashed: each safetensors tensor (name, dtype, shape,
    values), each JSON model file less :data:`WRITER_FIELDS` (and config.json less
    :data:`TRAINER_SET`), each other model file's bytes; never bookkeeping (:data:`NOT_LOADED`). Two
    folders holding the same tensors saved differently (a GGUF conversion and a trainer's save) hash
    equal. A hub id (not a folder) hashes as ``files.dir_hash`` does: its name.

    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> save_file({"w": torch.ones(2), "b": torch.zeros(1)}, str(a / "model.safetensors"))
    >>> save_file({"b": torch.zeros(1), "w": torch.ones(2)}, str(b / "model.safetensors"), metadata={"format": "pt"})
    >>> _ = (b / "model_card.json").write_text("{}")
    >>> _ = (a / "config.json").write_text('{"use_cache": true, "vocab_size": 8, "transformers_version": "5.24.0"}')
    >>> _ = (b / "config.json").write_text('{"vocab_size": 8, "use_cache": false, "transformers_version": "5.25.0"}')
    >>> model_identity(a) == model_identity(b)
    True
    >>> _ = (b / "config.json").write_text('{"vocab_size": 9, "use_cache": false}')
    >>> model_identity(a) == model_identity(b)
    False
    >>> _ = (b / "config.json").write_text('{"vocab_size": 8}')
    >>> save_file({"w": torch.tensor([1.0, 1.5]), "b": torch.zeros(1)}, str(b / "model.safetensors"))
    >>> model_identity(a) == model_identity(b)
    False
    """
    import torch
    from safetensors import safe_open

    p = Path(folder)
    if not p.is_dir():
        return dir_hash(folder)
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if not f.is_file() or f.name in NOT_LOADED:
            continue
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as st:
                for name in sorted(st.keys()):
                    t = st.get_tensor(name).contiguous()
                    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif f.suffix == ".json":  # as loaded: less the writer's version (and what trainers overwrite)
            doc = json.loads(f.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                for k in (*WRITER_FIELDS, *(TRAINER_SET if f.name == "config.json" else ())):
                    doc.pop(k, None)
            h.update(f.name.encode())
            h.update(json.dumps(doc, sort_keys=True).encode())
        elif f.suffix in MODEL_FILE_SUFFIXES:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def training_key(job: dict, init_identity: str, data_hash: str, code_version: str | None,
                 threads: int | None = None) -> str:
    """The key of what ``job`` computes (see the module's docstring). ``threads``: the torch threads
    the training runs with (default: the job's, else this process's).

    >>> job = {"stage": "il", "config": {"seed": 0}, "out_dir": "/a", "card": {"asset": "x"}}
    >>> k = training_key(job, "m", "d", "v", threads=1)
    >>> k == training_key({**job, "out_dir": "/b", "card": {"asset": "y"}}, "m", "d", "v", threads=1)
    True
    >>> k == training_key({**job, "config": {"seed": 1}}, "m", "d", "v", threads=1)
    False
    """
    import torch

    from act_pipeline.training.card import package_versions

    doc = {"job": {k: job.get(k) for k in JOB_FIELDS}, "init": init_identity, "data": data_hash,
           "code": code_version, "libraries": package_versions(LIBRARIES),
           "threads": threads or job.get("threads") or torch.get_num_threads()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (no bytes written); a copy where the file system cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class TrainingCache:
    """Trained checkpoints under ``root`` (``<key>.json``: the folder's URI, content hash and the
    training's result), reused by :meth:`run`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @contextlib.contextmanager
    def entry(self, key: str) -> Iterator[dict | None]:
        """Hold the key's lock (waiting while another process trains it); yields the entry whose
        folder is still there with its recorded content hash, or None."""
        path = self.root / f"{key}.json"
        with key_lock(self.root, key):
            doc = json.loads(path.read_text()) if path.is_file() else None
            yield doc if doc and Path(doc["uri"]).is_dir() and dir_hash(doc["uri"]) == doc["hash"] else None

    def store(self, key: str, out_dir: str | Path, result: dict) -> None:
        write_json(self.root / f"{key}.json", {"uri": str(out_dir), "hash": result["content_hash"],
                                               "result": {k: v for k, v in result.items() if k != "content_hash"}})

    def run(self, key: str, out_dir: str | Path, train: Callable[[], dict], card: dict | None, log: Log) -> dict:
        """``train()`` (returning the result with the folder's ``content_hash``), unless ``key`` was
        trained before: then the earlier folder's files are linked into ``out_dir`` with this
        arm's card, and its result comes back with ``reused_from`` (no training ran)."""
        from act_pipeline.training.card import write_model_card

        out_dir = Path(out_dir)
        with self.entry(key) as found:
            if found is None:
                res = train()
                self.store(key, out_dir, res)
                return res
            src, res = Path(found["uri"]), found["result"]
            log(f"the same training (key {key}: same starting tensors, data, settings, code) was done for {src}: "
                "its checkpoint is linked here, not trained again (training.reuse: false trains it)")
            with atomic_dir(out_dir) as tmp:
                for f in sorted(src.iterdir()):
                    if f.is_file() and f.name not in OWN_FILES:
                        link_or_copy(f, tmp / f.name)
                if card is not None:
                    write_model_card(tmp, {**card, "global_step": res.get("global_step"), "resumed_from": None,
                                           "reused_from": str(src)})
            h = dir_hash(out_dir)
            if h != found["hash"]:  # a file changed between the check and the links
                raise RuntimeError(f"{out_dir}: linked from {src}, but its content hash {h[:16]} is not the "
                                   f"recorded {found['hash'][:16]}")
            return {**res, "uri": str(out_dir), "content_hash": h, "reused_from": str(src)}
