"""Choosing the sampler backend from the profile (`sampling.backend`)."""

from __future__ import annotations

from collections.abc import Sequence

from act_pipeline.config import PipelineConfig
from act_pipeline.sampling.base import Sampler


def make_sampler(cfg: PipelineConfig, model_uri: str, stop_strings: Sequence[str] = ()) -> tuple[Sampler, object]:
    """The profile's sampler over the model at ``model_uri``, and its tokenizer (for prompts).

    ``transformers`` (default): the model loaded here in ``model.inference_dtype``, batched
    ``generate``. ``vllm``: a ``vllm.LLM`` over the same folder (GPU; ``pip install
    act-pipeline[gpu]``), ``sampling.tensor_parallel_size`` GPUs, ``sampling.gpu_memory_utilization``.
    """
    s = cfg.sampling
    if s.backend == "vllm":
        from transformers import AutoTokenizer

        from act_pipeline.sampling.vllm import VLLMSampler

        tok = AutoTokenizer.from_pretrained(model_uri, trust_remote_code=cfg.model.trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        sampler = VLLMSampler(model_uri, tok, stop_strings, tensor_parallel_size=s.tensor_parallel_size,
                              gpu_memory_utilization=s.gpu_memory_utilization, dtype=cfg.model.inference_dtype,
                              trust_remote_code=cfg.model.trust_remote_code,
                              max_model_len=cfg.model.max_context_tokens)
        return sampler, tok
    if s.backend != "transformers":
        raise ValueError(f"unknown sampling.backend {s.backend!r}")
    from act_pipeline.sampling.hf import TransformersSampler
    from act_pipeline.models import inference_device, load_model

    model, tok = load_model(model_uri, cfg.model.trust_remote_code, cfg.model.inference_dtype, inference_device(),
                            inference=True)
    return TransformersSampler(model, tok, batch_size=s.batch_size, stop_strings=stop_strings), tok
