"""1b. Constrained scoring (the default profile's ``sampling.policy: constrained``): every admissible
action of a state scored by pi_0's mean token log-likelihood after the agent prompt
(:func:`act_pipeline.sampling.constrained.score_continuations`), the token tree (kept) against the
right-padded batch over copies of the prompt's cache (before), on real expert states, and the tree
way's time against the least time of its own work on this CPU (:mod:`benchmarks.roofline`)."""

from __future__ import annotations

from benchmarks import roofline
from benchmarks.common import Ctx, entry, expert_states, interleaved, load, pick_spread, way

GOAL = 0.8  # of the bound, as the sampling line


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.sampling import constrained as C

    states = pick_spread(expert_states(ctx, 2 if ctx.quick else 4), 3 if ctx.quick else 8)
    model, tok = load(ctx.model, inference=True)
    history_len = 1  # the default profile's alfworld.history_len
    prompts = [C.scoring_prompt(tok, s, history_len) for s in states]
    conts = [[C.continuation(a) for a in s["admissible"]] for s in states]

    def scores(tree: bool) -> list[list[float]]:
        return [C.score_continuations(model, tok, p, c, 64, tree=tree) for p, c in zip(prompts, conts)]

    scores(True), scores(False)  # warm-up (first-call costs), not timed
    t = interleaved({"padded": lambda: scores(False), "tree": lambda: scores(True)}, 2, ctx.log)
    a = way("a right-padded batch per state over copies of the prompt's cache, LM head at every position "
            "(score_continuations(tree=False))", t["padded"], len(states), "states/s")
    b = way("the candidates' token tree, one forward per state, LM head at the scored nodes only (kept)",
            t["tree"], len(states), "states/s")
    tree_s, padded_s = t["tree"]["result"], t["padded"]["result"]
    diff = max(abs(x - y) for u, v in zip(tree_s, padded_s) for x, y in zip(u, v))

    def drawn(sc):  # the default profile's draws: K = 4 at the constrained temperature 0.25
        return [[act for act, _ in C.draw_constrained(s, x, 4, 0.25, ctx.seed)] for s, x in zip(states, sc)]

    # the least time of the tree way's own work: each prompt (all but its last token) encoded once, then
    # its tree's nodes after it, the LM head at the scored nodes (one row is in flops() already)
    roof = roofline.measure(model, ctx.quick)
    head_s = 2 * roof.hidden * roof.vocab / (roof.peak_GFLOPs * 1e9)
    bound_s, tokens, nodes, padded = 0.0, 0, 0, 0
    for p, c in zip(prompts, conts):
        ids = tok(p, add_special_tokens=False)["input_ids"]
        seqs = [[ids[-1]] + tok(x, add_special_tokens=False)["input_ids"] for x in c]
        _, parent, _, _ = C.token_tree(seqs)
        scored = len(set(parent) - {-1})
        bound_s += roof.call_s(1, len(ids) - 1, 0) + roof.call_s(1, len(parent), len(ids) - 1) + (scored - 1) * head_s
        tokens, nodes = tokens + len(ids) - 1, nodes + len(parent)
        padded += len(seqs) * max(len(s) for s in seqs)
    fraction = bound_s / b["median_s"]
    return [entry(
        "constrained_scoring", "constrained alternatives: every admissible action of N real expert states scored "
        "by pi_0 (the default profile's sampling step)",
        a, b, a["median_s"] / b["median_s"], f">= {GOAL:g} of the bound (B vs A reported)", fraction >= GOAL,
        n_states=len(states), candidates=sum(map(len, conts)), model=ctx.model_name, history_len=history_len,
        tokens={"prompt": tokens, "tree_nodes": nodes, "padded_batch": padded},
        checks={"max_abs_score_diff": diff, "identical_draws": drawn(tree_s) == drawn(padded_s)},
        bound={"bound_s": round(bound_s, 4), "fraction_of_bound": round(fraction, 3),
               "meaning": "the least time of the tree way's own work on this CPU: each prompt (all but its last "
                          "token) encoded once and its tree's nodes after it, each call max(FLOPs / matmul peak, "
                          "bytes / read bandwidth), plus the LM head at the scored nodes (benchmarks/roofline.py); "
                          "fraction_of_bound = bound_s / B's median seconds",
               "roofline": roof.brief()},
        before_after=[{"lever": "constrained scoring over the candidates' token tree (a shared token encoded once, "
                                "no padding, no per-candidate copy of the prompt's cache, LM head at scored nodes)",
                       "before": a, "after": b}],
    )]
