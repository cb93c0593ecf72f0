"""2. ALFWorld evaluation rollouts: N live games sharing one batched generate per step vs one
episode at a time (the same ``rollout_success`` with one game per call), greedy decoding; and the
batched way's time against its bound: the least time of its own forward calls on this CPU
(:mod:`benchmarks.roofline`) plus the rest of the run (env calls, prompts, parsing) as measured."""

from __future__ import annotations

import time
from contextlib import contextmanager

from benchmarks import roofline
from benchmarks.common import Ctx, build_games, entry, interleaved, load, profile_call, way

GOAL = 0.8  # of the bound
SMALL_ROWS = 8  # the products lever: inputs of at most this many rows computed as W @ x^T


@contextmanager
def products_as_weight_times_input(max_rows: int = SMALL_ROWS):
    """While active, every ``nn.Linear`` whose input has at most ``max_rows`` rows computes
    ``(W @ x^T)^T`` instead of ``x @ W^T``: the same product with the weight as the left operand, which
    MKL runs with another kernel (measured here: its 4-row ``x @ W^T`` runs at about the speed of
    four 1-row products). Float rounding may differ from ``F.linear`` (not bit-identical); a
    benchmark lever, not used by the pipeline.

    >>> import torch
    >>> lin = torch.nn.Linear(8, 3)
    >>> x = torch.randn(2, 4, 8)
    >>> with products_as_weight_times_input(8):
    ...     y = lin(x)
    >>> y.shape, torch.allclose(y, torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-6)
    (torch.Size([2, 4, 3]), True)
    >>> with products_as_weight_times_input(7):  # 8 rows: F.linear as before
    ...     torch.equal(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))
    True
    """
    import torch

    plain = torch.nn.Linear.forward

    def forward(self, x):
        rows = x.numel() // x.shape[-1]
        if rows > max_rows:
            return plain(self, x)
        y = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])

    torch.nn.Linear.forward = forward
    try:
        yield
    finally:
        torch.nn.Linear.forward = plain


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.envs.workers import WorkerLimits, WorkerPool
    from act_pipeline.evaluation.metrics import rollout_success
    from act_pipeline.sampling.hf import TransformersSampler

    n_games = 6 if ctx.quick else 4
    max_steps = 3
    max_new_tokens = 16  # the default profile's eval.max_new_tokens
    games = build_games(ctx, "valid_unseen", n_games)
    model, tok = load(ctx.model, inference=True)
    sampler = TransformersSampler(model, tok, batch_size=16, stop_strings=["</action>"])
    quiet = lambda m: None  # noqa: E731
    kw = dict(split="valid_unseen", seed=ctx.seed, max_steps=max_steps, history_len=2,
              max_new_tokens=max_new_tokens, log=quiet)
    # the games live in worker processes kept alive for the whole benchmark (as in eval_report);
    # both ways use the same pool, so neither pays interpreter / alfworld start-up per game
    with WorkerPool("act_pipeline.envs.alfworld:AlfworldGame", {"expert": None}, WorkerLimits(), 2, quiet) as pool:
        batched_warm = rollout_success(sampler, tok, games[:1], make_env=pool, **dict(kw, max_steps=1))  # warm-up
        del batched_warm

        log = roofline.ForwardLog(model)
        gen_s = [0.0]  # seconds inside sampler.generate in the last batched run
        run_s = [0.0]

        class Timed:  # the sampler, with the time spent generating counted
            def __init__(self, inner):
                self.inner = inner

            def __getattr__(self, name):
                return getattr(self.inner, name)

            def generate(self, *a, **k):
                t0 = time.perf_counter()
                try:
                    return self.inner.generate(*a, **k)
                finally:
                    gen_s[0] += time.perf_counter() - t0

        timed = Timed(sampler)

        def batched():
            gen_s[0] = 0.0
            t0 = time.perf_counter()
            m, eps = log.record(lambda: rollout_success(timed, tok, games, make_env=pool, **kw))
            run_s[0] = time.perf_counter() - t0
            return m.outcomes, [e.trace for e in eps]

        def sequential():
            outs, traces = [], []
            for g in games:
                m, eps = rollout_success(sampler, tok, [g], make_env=pool, **kw)
                outs += m.outcomes
                traces += [e.trace for e in eps]
            return outs, traces

        t = interleaved({"sequential": sequential, "batched": batched}, 2, ctx.log)
        seq_wins, seq_traces = t["sequential"]["result"]
        bat_wins, bat_traces = t["batched"]["result"]
        a = way("one episode at a time (rollout_success per game)", t["sequential"], n_games * 60, "episodes/min")
        b = way("all N episodes live, one batched generate per step", t["batched"], n_games * 60, "episodes/min")
        ratio = a["median_s"] / b["median_s"]
        same_actions = sum(x == y for x, y in zip(seq_traces, bat_traces))
        roof = roofline.measure(model, ctx.quick)
        calls = log.summary(roof)
        rest_s = run_s[0] - gen_s[0]  # env calls, prompts, parsing: counted as measured
        bound_s = rest_s + calls["bound_s"]
        fraction = bound_s / run_s[0]
        prods = log.products()  # the calls' products alone: how much of the bound this BLAS leaves reachable
        ceiling = bound_s / (rest_s + prods["products_s"])
        if "attention_s" in calls:  # the products at their shapes plus the attention as it ran
            prods["kernels_ceiling"] = round(bound_s / (rest_s + prods["products_s"] + calls["attention_s"]), 3)
        res = entry(
            "rollouts", "ALFWorld evaluation episodes (valid_unseen, greedy)", a, b, ratio,
            f">= {GOAL:g} of the bound, identical success counts (B vs A reported)",
            fraction >= GOAL and sum(seq_wins) == sum(bat_wins),
            n_games=n_games, seed=ctx.seed, model=ctx.model_name,
            params={"max_steps": max_steps, "max_new_tokens": max_new_tokens, "history_len": 2,
                    "batch_size": 16, "env_workers": 2, "decoding": "greedy"},
            checks={"successes_sequential": sum(seq_wins), "successes_batched": sum(bat_wins),
                    "identical_success_counts": sum(seq_wins) == sum(bat_wins),
                    "episodes_with_identical_action_traces": same_actions,
                    "identical_action_traces": same_actions == n_games},
            bound={**calls, "bound_s": round(bound_s, 4), "model_bound_s": calls["bound_s"],
                   "outside_generate_s": round(rest_s, 4), "generate_s": round(gen_s[0], 4),
                   "run_s": round(run_s[0], 4), "fraction_of_bound": round(fraction, 3),
                   **prods, "products_ceiling": round(ceiling, 3),
                   "meaning": "the batched way's last timed run: the least time of its forward calls on "
                              "this CPU (each max(FLOPs / matmul peak, bytes / read bandwidth), "
                              "benchmarks/roofline.py) plus its time outside sampler.generate (env calls, "
                              "prompt rendering, parsing) as measured; fraction_of_bound = bound_s / run_s; "
                              "products_ceiling = bound_s / (the same outside time + the calls' matrix "
                              "products alone at their shapes, roofline.ForwardLog.products): the most "
                              "of the bound reachable on this BLAS were attention, norms and Python free; "
                              "kernels_ceiling: the same with attention_s added (the model's attention calls "
                              "timed as they ran in that run): the most reachable were norms, activations, "
                              "cache bookkeeping and Python free",
                   "roofline": roof.brief()},
        )
        if fraction < GOAL:
            # before/after of the levers added for this benchmark, each turned back on its own: each prompt
            # encoded alone (no padding FLOPs) instead of the left-padded batch; the KV cache grown in place
            def batched_with(**option):  # the batched way with one sampler option turned back (none: as kept)
                other = TransformersSampler(model, tok, batch_size=16, stop_strings=["</action>"], **option)

                def play():
                    m, eps = rollout_success(other, tok, games, make_env=pool, **kw)
                    return m.outcomes, [e.trace for e in eps]
                return play

            def with_small_products_transposed(play):  # a way, its small products as W @ x^T
                def run():
                    with products_as_weight_times_input():
                        return play()
                return run

            t_before = interleaved({"batched_padded_prefill": batched_with(ragged_prefill=False),
                                    "batched_dynamic_cache": batched_with(grow_cache=False)}, 1, ctx.log)
            # the products lever: the kept way (a sampler of its settings, not the metered run) alternated
            # with the same way under W @ x^T
            t_small = interleaved({"batched": batched_with(),
                                   "batched_products_transposed": with_small_products_transposed(batched_with())},
                                  2, ctx.log)
            res["before_after"] = [{
                "lever": "ragged prefill: each prompt of the batch encoded alone, caches left-padded for decoding",
                "before": way("batched, prompts encoded as one left-padded batch", t_before["batched_padded_prefill"],
                              n_games * 60, "episodes/min"),
                "after": b,
                "before_successes": sum(t_before["batched_padded_prefill"]["result"][0]),
            }, {
                "lever": "KV cache grown in place (act_pipeline.sampling.kv.GrowingCache) instead of "
                         "transformers' DynamicCache, which copies the whole cache at every generated token",
                "before": way("batched, DynamicCache", t_before["batched_dynamic_cache"], n_games * 60,
                              "episodes/min"),
                "after": b,
                "identical_action_traces": t_before["batched_dynamic_cache"]["result"][1] == bat_traces,
            }, {
                "lever": f"decoding's small products (inputs of <= {SMALL_ROWS} rows) as W @ x^T instead of "
                         "x @ W^T (F.linear), another MKL kernel for the same product; not bit-identical",
                "before": way("batched, F.linear (kept)", t_small["batched"], n_games * 60, "episodes/min"),
                "after": way("batched, small products as W @ x^T", t_small["batched_products_transposed"],
                             n_games * 60, "episodes/min"),
                "identical_action_traces": t_small["batched_products_transposed"]["result"][1] == bat_traces,
                "note": "kept: no; a patch of nn.Linear for a gain at few rows only, and not bit-identical",
            }]
            res["profile"] = profile_call(ctx, "rollouts", batched, {
                "generate": ("generate",), "env_calls": ("call",), "prompt_render": ("agent_prompt",)})
    return [res]
