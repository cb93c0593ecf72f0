"""Sampler backends behind one interface: the transformers backend for real (tiny model), and the
vLLM adapter's request/response mapping with stand-ins built from vLLM's documented names (no GPU,
no vllm install): vLLM's outputs become the expected completions and alternatives table."""

import dataclasses

import pytest

from act_pipeline.config import load_config
from act_pipeline.sampling.alternatives import sample_alternatives
from act_pipeline.sampling.backends import make_sampler
from act_pipeline.sampling.base import Sampler, SamplingParams
from act_pipeline.sampling.vllm import VLLMSampler, build_requests, parse_outputs, vllm_sampling_kwargs
from tests.conftest import SMOKE

STATES = [{"state_id": f"s{i}", "game_id": "g1", "split": "train", "step": i, "task": "put a mug in the sink.",
           "observation": f"You see a sink 1. ({i})", "history": [], "admissible": ["go to sink 1", "look", "inventory"],
           "expert_action": "go to sink 1", "won": True} for i in range(3)]


# vLLM's own names, written out from its documentation and source (vllm/sampling_params.py,
# vllm/outputs.py), never derived from the adapter: the stand-ins accept and return what vLLM does.
VLLM_SAMPLING_PARAMS = {  # SamplingParams: its keyword arguments and defaults
    "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0, "temperature": 1.0,
    "top_p": 1.0, "top_k": 0, "min_p": 0.0, "seed": None, "stop": None, "stop_token_ids": None, "ignore_eos": False,
    "max_tokens": 16, "min_tokens": 0, "logprobs": None, "prompt_logprobs": None, "detokenize": True,
    "skip_special_tokens": True, "spaces_between_special_tokens": True, "include_stop_str_in_output": False,
    "output_kind": None, "structured_outputs": None, "logit_bias": None, "allowed_token_ids": None,
    "extra_args": None, "bad_words": None,
}


class VLLMSamplingParamsStandIn:
    """vllm.SamplingParams: any of its keywords (the others keep vLLM's defaults); another is a TypeError."""

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(VLLM_SAMPLING_PARAMS))
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {unknown}")
        for k, v in {**VLLM_SAMPLING_PARAMS, **kwargs}.items():
            setattr(self, k, v)


@dataclasses.dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None  # "stop" (EOS or a stop string) or "length" (max_tokens)
    stop_reason: int | str | None = None  # the stop string or token id, None at EOS or length


@dataclasses.dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    prompt: str | None
    prompt_token_ids: list | None
    prompt_logprobs: list | None
    outputs: list
    finished: bool


class LLMStandIn:
    """vllm.LLM.generate on ``TokensPrompt`` dicts (``{"prompt_token_ids": [...]}``), one SamplingParams per
    prompt: ``script[i][j]`` is sample j of prompt i, as (text up to where vLLM stopped, why). vLLM
    drops a matched stop string from the text unless ``include_stop_str_in_output``; results come
    back in request order, each request's completions in whatever order they finished."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        assert len(prompts) == len(sampling_params)
        outs = []
        for i, (p, sp) in enumerate(zip(prompts, sampling_params)):
            assert set(p) == {"prompt_token_ids"} and all(isinstance(t, int) for t in p["prompt_token_ids"])
            comps = []
            for j, (text, why) in enumerate(self.script[i][:sp.n]):
                stop = next((s for s in (sp.stop or []) if text.endswith(s)), None) if why == "stop" else None
                if stop and not sp.include_stop_str_in_output:
                    text = text[: -len(stop)]
                comps.append(CompletionOutput(index=j, text=text, token_ids=[7] * len(text), cumulative_logprob=-1.0,
                                              logprobs=None, finish_reason=why, stop_reason=stop))
            outs.append(RequestOutput(request_id=str(i), prompt=None, prompt_token_ids=p["prompt_token_ids"],
                                      prompt_logprobs=None, outputs=comps[::-1], finished=True))
        return outs


def test_vllm_sampling_params_mapping():
    kw = vllm_sampling_kwargs(SamplingParams(n=4, temperature=0.7, top_p=0.9, max_new_tokens=12, seed=3),
                              ["</action>"], 5)
    assert kw == {"n": 4, "temperature": 0.7, "top_p": 0.9, "top_k": -1, "max_tokens": 12, "seed": 5,
                  "stop": ["</action>"], "include_stop_str_in_output": True, "skip_special_tokens": True}
    greedy = vllm_sampling_kwargs(SamplingParams(n=1, temperature=0.0, top_p=0.5), [], 0)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["stop"] is None


def test_requests_are_token_ids_without_added_special_tokens(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompts = ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<action>", "x"]
    reqs, kws = build_requests(prompts, SamplingParams(n=3, seed=100), lambda p: tok(p, add_special_tokens=False)["input_ids"])
    assert [r["prompt_token_ids"] for r in reqs] == [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert [k["seed"] for k in kws] == [100, 101] and all(k["n"] == 3 for k in kws)


def test_parse_outputs_orders_by_sample_index_and_checks_counts():
    outs = [RequestOutput("0", None, [1], None, [CompletionOutput(1, "b", [2], None, None, "length"),
                                                  CompletionOutput(0, "a", [1], None, None, "stop", "</action>")], True)]
    got = parse_outputs(outs, 1, 2)
    assert got == [["a", "b"]] and [c.truncated for c in got[0]] == [False, True]
    with pytest.raises(ValueError, match="completions for prompt 0"):
        parse_outputs(outs, 1, 3)
    with pytest.raises(ValueError, match="1 results for 2 prompts"):
        parse_outputs(outs, 2, 2)


SCRIPT = [[("go to sink 1</action>", "stop"), ("look</action>", "stop")],
          [("inventory</action>", "stop"), ("go to si", "length")],
          [("fly</action>", "stop"), ("look</action>", "stop")]]


def test_vllm_adapter_maps_vllms_outputs_to_completions_and_the_table(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    llm = LLMStandIn(SCRIPT)
    vl = VLLMSampler(tiny_model, tok, stop_strings=["</action>"], llm=llm, sampling_params_cls=VLLMSamplingParamsStandIn)
    params = SamplingParams(n=2, temperature=0.7, top_p=0.9, max_new_tokens=6, seed=10)
    prompts = ["a <action>", "bb <action>", "ccc <action>"]
    out = vl.generate(prompts, params)
    assert out == [["go to sink 1</action>", "look</action>"], ["inventory</action>", "go to si"],
                   ["fly</action>", "look</action>"]]
    assert [[c.truncated for c in o] for o in out] == [[False, False], [False, True], [False, False]]
    (sent, sps), = llm.calls  # one batched call: every prompt, each with its own seed
    assert [p["prompt_token_ids"] for p in sent] == [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert [(sp.n, sp.seed, sp.temperature, sp.top_p, sp.max_tokens, sp.stop) for sp in sps] == [
        (2, 10, 0.7, 0.9, 6, ["</action>"]), (2, 11, 0.7, 0.9, 6, ["</action>"]), (2, 12, 0.7, 0.9, 6, ["</action>"])]
    assert all(sp.top_k in (0, -1) for sp in sps)  # vLLM: 0 or -1 is no top-k
    # downstream, the alternatives table from vLLM's completions
    table, counts = sample_alternatives(vl, tok, STATES, params, 2)
    assert counts["sampled"] == 3
    assert [(r["state_id"], r["sample_index"], r["completion"], r["action"], r["reason"], r["origin"])
            for r in table.to_pylist()] == [
        ("s0", 0, "go to sink 1</action>", "go to sink 1", "equals_expert", "model"),
        ("s0", 1, "look</action>", "look", "kept", "model"),
        ("s1", 0, "inventory</action>", "inventory", "kept", "model"),
        ("s1", 1, "go to si", None, "unparsable", "model"),  # cut at max_tokens
        ("s2", 0, "fly</action>", "fly", "inadmissible", "model"),
        ("s2", 1, "look</action>", "look", "kept", "model")]


def test_the_transformers_backend_gives_n_completions_per_prompt(tiny_model):
    cfg = load_config(SMOKE)
    hf, tok = make_sampler(cfg, tiny_model, stop_strings=["</action>"])
    assert isinstance(hf, Sampler) and hf.name == "transformers"
    out = hf.generate(["a <action>", "bb <action>", "ccc <action>"], SamplingParams(n=2, temperature=1.0,
                                                                                     max_new_tokens=6, seed=0))
    assert len(out) == 3 and all(len(x) == 2 and all(isinstance(t, str) for t in x) for x in out)
    table, _ = sample_alternatives(hf, tok, STATES, SamplingParams(n=2, max_new_tokens=6, seed=0), 2)
    assert table.num_rows == 6 and table.column("state_id").to_pylist() == ["s0", "s0", "s1", "s1", "s2", "s2"]


def test_vllm_backend_is_chosen_by_config(tmp_path):
    import yaml

    data = yaml.safe_load(SMOKE.read_text())
    data["sampling"].update(backend="vllm", tensor_parallel_size=2, gpu_memory_utilization=0.5)
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data))
    cfg = load_config(p)
    assert cfg.sampling.backend == "vllm" and cfg.sampling.tensor_parallel_size == 2
    data["sampling"]["gpu_memory_utilization"] = 1.5
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        load_config(p)
