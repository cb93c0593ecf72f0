"""Sampler backends behind one interface: the transformers backend for real (tiny model), and the
vLLM adapter's request/response mapping with stand-ins shaped like vLLM's objects (no GPU, no
vllm install): the same `list[list[str]]` out, and the same alternatives table downstream."""

import dataclasses
from types import SimpleNamespace

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


@dataclasses.dataclass
class FakeVLLMSamplingParams:
    """Stands in for vllm.SamplingParams: accepts exactly the fields the adapter sets."""
    n: int
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int | None
    stop: list | None
    include_stop_str_in_output: bool
    skip_special_tokens: bool


class FakeLLM:
    """Stands in for vllm.LLM: returns RequestOutput-shaped objects, completions out of index order."""

    def __init__(self, texts):
        self.texts = texts
        self.calls = []

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outs = []
        for i, (p, sp) in enumerate(zip(prompts, sampling_params)):
            comps = [SimpleNamespace(index=j, text=self.texts[(i + j) % len(self.texts)], token_ids=[1, 2])
                     for j in range(sp.n)]
            outs.append(SimpleNamespace(request_id=str(i), prompt_token_ids=p["prompt_token_ids"],
                                        outputs=list(reversed(comps)), finished=True))
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
    outs = [SimpleNamespace(outputs=[SimpleNamespace(index=1, text="b"), SimpleNamespace(index=0, text="a")])]
    assert parse_outputs(outs, 1, 2) == [["a", "b"]]
    with pytest.raises(ValueError, match="completions for prompt 0"):
        parse_outputs(outs, 1, 3)
    with pytest.raises(ValueError, match="1 results for 2 prompts"):
        parse_outputs(outs, 2, 2)


def test_both_backends_give_the_same_table_shape(tiny_model):
    cfg = load_config(SMOKE)
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=6, seed=0)
    hf, tok = make_sampler(cfg, tiny_model, stop_strings=["</action>"])
    assert isinstance(hf, Sampler) and hf.name == "transformers"
    fake = FakeLLM(["go to sink 1</action>", "look</action>", "inventory</action>", "fly</action>"])
    vl = VLLMSampler(tiny_model, tok, stop_strings=["</action>"], llm=fake, sampling_params_cls=FakeVLLMSamplingParams)
    prompts = ["a <action>", "bb <action>", "ccc <action>"]
    for sampler in (hf, vl):
        out = sampler.generate(prompts, params)
        assert len(out) == 3 and all(len(x) == 2 and all(isinstance(t, str) for t in x) for x in out)
    assert vl.generate(prompts, params)[0] == ["go to sink 1</action>", "look</action>"]
    sent_prompts, sent_params = fake.calls[0]
    assert len(sent_prompts) == 3 and [p.seed for p in sent_params] == [0, 1, 2]  # one batched call
    t_hf, _ = sample_alternatives(hf, tok, STATES, params, 2)
    t_vl, counts = sample_alternatives(vl, tok, STATES, params, 2)
    assert t_hf.schema == t_vl.schema and t_hf.num_rows == t_vl.num_rows == 6
    assert set(t_vl.column("reason").to_pylist()) <= {"kept", "equals_expert", "inadmissible", "duplicate", "unparsable"}
    first = [r for r in t_vl.to_pylist() if r["state_id"] == "s0"]
    assert [(r["action"], r["reason"]) for r in first] == [("go to sink 1", "equals_expert"), ("look", "kept")]


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
