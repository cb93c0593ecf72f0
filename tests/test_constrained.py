"""Constrained alternatives (pi_0 restricted to the admissible actions): the one-prefill scorer
against a naive full forward pass, the seeded draws, the score and completion caches in a real
DuckDB warehouse, and the origins each sampling policy gives (real tiny model)."""

import functools
import math
import random

import pytest

from act_pipeline.envs.actions import normalize_action
from act_pipeline.act.pairs import KEPT
from act_pipeline.data.store import Warehouse
from act_pipeline.sampling import constrained
from act_pipeline.sampling.alternatives import ALTERNATIVES_SCHEMA, sample_alternatives
from act_pipeline.sampling.base import Completion, SamplingParams
from act_pipeline.sampling.cache import SampleCache, sampling_key
from act_pipeline.sampling.hf import TransformersSampler
from act_pipeline.models import load_model

ADMISSIBLE = ["go to sink 1", "look", "inventory", "go to cabinet 1", "go to cabinet 12", "open drawer 3",
              "take mug 1 from countertop 2", "examine countertop 2", "go to fridge 1", "use desklamp 1"]


def _states(n, admissible=ADMISSIBLE, expert="go to sink 1"):
    return [{"state_id": f"s{i:03d}", "game_id": "g1", "split": "train", "step": i, "task": "put a mug in the sink.",
             "observation": f"You are in the middle of a room. ({i})",
             "history": [{"action": "look", "observation": "You see a sink 1."}] if i % 2 else [],
             "admissible": list(admissible), "expert_action": expert, "won": True} for i in range(n)]


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model)


class ScriptedSampler(TransformersSampler):
    """The real tiny model (for scoring), with free completions scripted per call."""

    def __init__(self, m, tok, texts):
        super().__init__(m, tok)
        self.texts = texts
        self.calls = 0

    def generate(self, prompts, params, progress=None):
        self.calls += 1
        return [[self.texts[j % len(self.texts)] for j in range(params.n)] for _ in prompts]


class NoGenerate(TransformersSampler):
    def generate(self, prompts, params, progress=None):
        raise AssertionError("the constrained policy generates nothing freely")


def _naive(m, tok, prompt, cont, mean=False):
    """Summed (or mean) token log-likelihood of cont after prompt: one full forward pass, no cache."""
    import torch

    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = m(input_ids=torch.tensor([p + c])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[len(p) - 1 + t, c[t]]) for t in range(len(c))) / (len(c) if mean else 1)


def test_scores_equal_a_naive_full_forward_pass(model):
    m, tok = model
    states = _states(3)
    for batch_size in (64, 3):  # one batched forward per state, and chunks of 3 candidates
        scores = constrained.score_admissible(m, tok, states, history_len=2, batch_size=batch_size)
        padded = {s["state_id"]: constrained.score_continuations(  # the way before the token tree
            m, tok, constrained.scoring_prompt(tok, s, 2), [constrained.continuation(a) for a in s["admissible"]],
            batch_size, tree=False) for s in states}
        assert all(abs(a - b) < 1e-4 for k in padded for a, b in zip(scores[k], padded[k]))
        for s in states:
            prompt = constrained.scoring_prompt(tok, s, 2)
            assert prompt.endswith("<action>")
            naive = [_naive(m, tok, prompt, constrained.continuation(a), mean=True) for a in s["admissible"]]
            assert len(scores[s["state_id"]]) == len(s["admissible"])
            for got, want in zip(scores[s["state_id"]], naive):
                assert abs(got - want) < 1e-4, (got, want)
            assert all(x < 0 for x in scores[s["state_id"]])
        means = constrained.score_admissible(m, tok, states, history_len=2, batch_size=batch_size, reduce="sum")
        both = constrained.score_admissible(m, tok, states, history_len=2, batch_size=batch_size, reduce="both")
        for s in states:
            prompt = constrained.scoring_prompt(tok, s, 2)
            naive = [_naive(m, tok, prompt, constrained.continuation(a)) for a in s["admissible"]]
            assert all(abs(g - w) < 1e-4 for g, w in zip(means[s["state_id"]], naive))  # the summed scores
            assert [b for b, _ in both[s["state_id"]]] == means[s["state_id"]]
            assert [b for _, b in both[s["state_id"]]] == scores[s["state_id"]]


def test_the_token_tree_encodes_each_shared_token_once(model, monkeypatch):
    """The candidates' forward is one row of the tree's nodes (a token that candidates begin with
    alike is encoded once), and the LM head runs only at the nodes whose next token is scored."""
    m, tok = model
    prompt = constrained.scoring_prompt(tok, _states(1)[0], 2)
    conts = [tok(constrained.continuation(a), add_special_tokens=False)["input_ids"] for a in ADMISSIBLE]
    last = tok(prompt, add_special_tokens=False)["input_ids"][-1]
    nodes, parent, _, _ = constrained.token_tree([[last] + c for c in conts])
    assert len(nodes) < sum(len(c) + 1 for c in conts)  # "go to ..." shares its first tokens
    calls = []
    real = type(m).forward

    @functools.wraps(real)  # the same signature: the scorer reads it
    def spy(self, *a, **kw):
        out = real(self, *a, **kw)
        calls.append((tuple(kw["input_ids"].shape), tuple(out.logits.shape)))
        return out

    monkeypatch.setattr(type(m), "forward", spy)
    constrained.score_continuations(m, tok, prompt, [constrained.continuation(a) for a in ADMISSIBLE])
    prefill, tree = calls
    assert prefill[0][0] == 1 and tree[0] == (1, len(nodes))
    assert tree[1][:2] == (1, len(set(parent) - {-1}))  # the parents: the nodes whose next token counts


def test_draws_are_admissible_unique_without_the_expert_and_seeded(model):
    m, tok = model
    states = _states(6)
    scores = constrained.score_admissible(m, tok, states, history_len=2)
    k = 4
    by_seed = {}
    for seed in (0, 1):
        for s in states:
            draws = constrained.draw_constrained(s, scores[s["state_id"]], k, 1.0, seed)
            actions = [a for a, _ in draws]
            assert len(actions) == k and len(set(actions)) == k
            assert all(a in s["admissible"] for a in actions)
            assert normalize_action(s["expert_action"]) not in {normalize_action(a) for a in actions}
            assert all(lp == scores[s["state_id"]][s["admissible"].index(a)] for a, lp in draws)
            assert draws == constrained.draw_constrained(s, scores[s["state_id"]], k, 1.0, seed)  # reproducible
            by_seed.setdefault(seed, []).append(actions)
    assert by_seed[0] != by_seed[1]  # another seed draws differently
    s = states[0]
    # never more than the admissible actions other than the expert's (and the excluded ones)
    assert len(constrained.draw_constrained(s, scores["s000"], 50, 1.0, 0)) == len(ADMISSIBLE) - 1
    assert len(constrained.draw_constrained(s, scores["s000"], 50, 1.0, 0, exclude=["look"])) == len(ADMISSIBLE) - 2
    assert constrained.draw_constrained(s, scores["s000"], 0, 1.0, 0) == []


def test_low_temperature_draws_the_top_scored_actions(model):
    m, tok = model
    states = _states(4)
    scores = constrained.score_admissible(m, tok, states, history_len=2)
    for s in states:
        sc = scores[s["state_id"]]
        ranked = sorted((a for a in s["admissible"] if a != s["expert_action"]),
                        key=lambda a: -sc[s["admissible"].index(a)])
        for t in (1e-6, 0.0):
            assert [a for a, _ in constrained.draw_constrained(s, sc, 3, t, 5)] == ranked[:3]


def test_draws_follow_p_to_the_one_over_t():
    """The first draw's frequencies over many seeded states match softmax(scores / T)."""
    adm = ["e", "a", "b", "c"]
    scores = [0.0, -0.2, -1.0, -2.0]
    for t in (1.0, 0.5):
        want = constrained.restricted_distribution(scores[1:], t)
        n = 6000
        counts = dict.fromkeys(adm[1:], 0)
        for i in range(n):
            s = {"state_id": f"x{i}", "admissible": adm, "expert_action": "e"}
            counts[constrained.draw_constrained(s, scores, 1, t, 0)[0][0]] += 1
        for a, p in zip(adm[1:], want):
            assert abs(counts[a] / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, (t, a, counts[a] / n, p)


def test_constrained_policy_caches_scores_and_scores_only_new_states(model, tmp_path, monkeypatch):
    m, tok = model
    wh = Warehouse(tmp_path / "w.duckdb")
    key = sampling_key(model="tiny", policy="constrained")
    params = SamplingParams(n=3, temperature=1.0, seed=0)
    sampler = NoGenerate(m, tok)
    first, c1 = sample_alternatives(sampler, tok, _states(5), params, 2, policy="constrained",
                                    cache=SampleCache(wh, key))
    assert (c1["sampled"], c1["cached"], c1["scored"], c1["generated"]) == (5, 0, 5, 0)
    assert first.schema == ALTERNATIVES_SCHEMA and first.num_rows == 15
    calls = []
    real = constrained.score_continuations
    monkeypatch.setattr(constrained, "score_continuations", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    again, c2 = sample_alternatives(sampler, tok, _states(5), params, 2, policy="constrained",
                                    cache=SampleCache(wh, key))
    assert not calls and (c2["sampled"], c2["cached"], c2["scored"], c2["scores_cached"]) == (0, 5, 0, 5)
    assert again.to_pylist() == first.to_pylist()  # the same rows, scores bit for bit
    more, c3 = sample_alternatives(sampler, tok, _states(7), params, 2, policy="constrained",
                                   cache=SampleCache(wh, key))
    assert len(calls) == 2 and (c3["sampled"], c3["cached"]) == (2, 5)  # only the two new states
    assert more.slice(0, 15).to_pylist() == first.to_pylist()
    # another key (e.g. another model or policy) scores everything again
    _, c4 = sample_alternatives(sampler, tok, _states(2), params, 2, policy="constrained",
                                cache=SampleCache(wh, sampling_key(model="other", policy="constrained")))
    assert c4["scored"] == 2


def test_completion_cache_keeps_truncation_flags_and_ignores_the_old_table(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.connect() as con:  # the first version's table, without truncation flags
        con.execute("CREATE TABLE sampling_cache (state_id VARCHAR, sampling_key VARCHAR, completions VARCHAR[], "
                    "PRIMARY KEY (state_id, sampling_key))")
        con.execute("INSERT INTO sampling_cache VALUES ('s0', 'k', ['look</action>'])")
    cache = SampleCache(wh, "k")
    assert cache.lookup(["s0"]) == {}  # its completions cannot get the same verdicts again: sampled anew
    cache.store({"s0": [Completion("go to cabinet 1", truncated=True), Completion("look</action>"), "plain"]})
    got = cache.lookup(["s0", "s1"])["s0"]
    assert got == ["go to cabinet 1", "look</action>", "plain"]
    assert all(isinstance(c, Completion) for c in got) and [c.truncated for c in got] == [True, False, False]


def test_a_cached_rerun_gives_the_same_rows_for_every_policy(model, tmp_path):
    m, tok = model
    wh = Warehouse(tmp_path / "w.duckdb")
    texts = [Completion("look</action>"), Completion("fly</action>"), Completion("go to cab", truncated=True),
             Completion("go to sink 1</action>")]
    params = SamplingParams(n=4, temperature=1.0, seed=3)
    for policy in ("free", "free+random_fill", "free+constrained_fill", "constrained"):
        sampler = ScriptedSampler(m, tok, texts) if policy != "constrained" else NoGenerate(m, tok)
        key = sampling_key(model="tiny", policy=policy)
        first, _ = sample_alternatives(sampler, tok, _states(3), params, 2, policy=policy, cache=SampleCache(wh, key))
        calls = getattr(sampler, "calls", 0)
        again, counts = sample_alternatives(sampler, tok, _states(3), params, 2, policy=policy,
                                            cache=SampleCache(wh, key))
        assert getattr(sampler, "calls", 0) == calls and counts["sampled"] == 0, policy
        assert again.to_pylist() == first.to_pylist(), policy


def test_each_policy_gives_the_right_origins(model):
    m, tok = model
    states = _states(3)
    # verdicts: kept, inadmissible, unparsable, equals_expert -> two samples to fill per state
    texts = ["look</action>", "fly</action>", "", "go to sink 1</action>"]
    params = SamplingParams(n=4, temperature=1.0, seed=0)
    out = {}
    for policy in ("free", "free+random_fill", "free+constrained_fill"):
        table, counts = sample_alternatives(ScriptedSampler(m, tok, texts), tok, states, params, 2, policy=policy)
        out[policy] = table.to_pylist()
        assert table.schema == ALTERNATIVES_SCHEMA
    table, counts = sample_alternatives(NoGenerate(m, tok), tok, states, params, 2, policy="constrained")
    out["constrained"] = table.to_pylist()
    assert counts["generated"] == 0 and counts["scored"] == 3

    for policy, rows in out.items():
        for s in states:
            mine = [r for r in rows if r["state_id"] == s["state_id"]]
            assert [r["sample_index"] for r in mine] == list(range(len(mine)))
            model_rows = [r for r in mine if r["origin"] == "model"]
            extra = [r for r in mine if r["origin"] != "model"]
            if policy == "constrained":
                assert not model_rows and len(extra) == 4
            else:
                assert [(r["action"], r["reason"]) for r in model_rows] == [
                    ("look", "kept"), ("fly", "inadmissible"), (None, "unparsable"), ("go to sink 1", "equals_expert")]
                assert all(r["logprob"] is None for r in model_rows)
            if policy == "free":
                assert not extra
                continue
            origin = "random_fill" if policy == "free+random_fill" else "model_constrained"
            assert {r["origin"] for r in extra} == {origin}
            assert len(extra) == (4 if policy == "constrained" else 2)  # one per unparsable / inadmissible sample
            kept = [r["action"] for r in mine if r["reason"] == KEPT]
            assert len(set(kept)) == len(kept) and "go to sink 1" not in kept
            assert all(r["action"] in s["admissible"] and r["reason"] == KEPT and r["completion"] == "" for r in extra)
            if origin == "model_constrained":
                assert all(isinstance(r["logprob"], float) and r["logprob"] < 0 for r in extra)
                if policy == "free+constrained_fill":
                    assert "look" not in [r["action"] for r in extra]  # not already kept
            else:
                assert all(r["logprob"] is None for r in extra)


def test_constrained_policy_needs_a_transformers_model():
    class Remote:
        name = "vllm"

        def generate(self, prompts, params, progress=None):
            return [["look</action>"] * params.n for _ in prompts]

    with pytest.raises(ValueError, match="transformers model"):
        sample_alternatives(Remote(), None, _states(1), SamplingParams(n=2), 2, policy="constrained")
    with pytest.raises(ValueError, match="unknown sampling policy"):
        sample_alternatives(Remote(), None, _states(1), SamplingParams(n=2), 2, policy="fill")


def test_restricted_distribution_is_p_to_the_one_over_t():
    scores = [random.Random(i).uniform(-3, 0) for i in range(5)]
    z = sum(math.exp(s) for s in scores)
    p = [math.exp(s) / z for s in scores]
    for t in (0.5, 1.0, 2.0):
        q = [x ** (1 / t) for x in p]
        want = [x / sum(q) for x in q]
        assert all(abs(a - b) < 1e-12 for a, b in zip(constrained.restricted_distribution(scores, t), want))
