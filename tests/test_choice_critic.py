"""The restricted critic answer (``act.answer`` / ``eval.judgement``: choice) with a real (tiny) model:
the answer tokens, the forced choice read with a shared prefix, its accuracy on a case whose
answer is known, and ACT trained by TRL's GRPO with every completion an answer."""

import json

import pytest

from act_pipeline.act.prompts import State, choice_token_ids, critic_prompt
from act_pipeline.config import ACTConfig
from act_pipeline.evaluation.metrics import choice_picks, judgement_accuracy
from act_pipeline.models import load_model

ADM = ["go to sink 1", "go to shelf 1", "look", "inventory", "take mug 1 from table 1"]


def _pairs(slots):
    """Pairs over two states (the same state block for several pairs), the expert in ``slots``."""
    rows = []
    for i, slot in enumerate(slots):
        state = {"task": f"put a mug in the sink {i % 2}.", "observation": "You see a sink 1 and a shelf 1.",
                 "history": [], "admissible": ADM, "game_id": f"g{i % 2}", "task_type": "pick"}
        expert, alt = ADM[i % 2], ADM[2 + i % 3]
        a1, a2 = (expert, alt) if slot == 1 else (alt, expert)
        rows.append({**state, "pair_id": f"p{i}", "expert_action": expert, "action_1": a1, "action_2": a2,
                     "expert_slot": slot, "split": "valid_unseen", "origin": "model_constrained"})
    return rows


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model)


def test_the_answer_tokens_are_the_digits_right_after_the_tag(model):
    _, tok = model
    ids = choice_token_ids(tok)
    assert len(set(ids)) == 2
    assert ids == [tok("1", add_special_tokens=False)["input_ids"][0], tok("2", add_special_tokens=False)["input_ids"][0]]


def test_the_shared_prefix_read_equals_one_prompt_at_a_time_and_restricted_greedy_decoding(model):
    import torch

    mdl, tok = model
    rows = _pairs([1, 2, 2, 1, 2, 1])
    prompts = [critic_prompt(tok, State.from_row(r), r["action_1"], r["action_2"], 1) for r in rows]
    together = choice_picks(mdl, tok, prompts, batch_size=2)
    alone = [choice_picks(mdl, tok, [p])[0] for p in prompts]
    assert [c for c, _ in together] == [c for c, _ in alone]
    assert [p for _, p in together] == pytest.approx([p for _, p in alone], abs=1e-5)
    ids = choice_token_ids(tok)
    suppress = [i for i in range(mdl.get_output_embeddings().weight.shape[0]) if i not in ids]
    for p, (choice, _) in zip(prompts, together):
        enc = tok(p, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = mdl.generate(**enc, max_new_tokens=1, do_sample=False, suppress_tokens=suppress)
        assert ids.index(int(out[0, -1])) + 1 == choice


def test_a_critic_that_always_says_1_scores_the_share_of_pairs_with_the_expert_in_slot_1(tiny_model):
    import torch

    from act_pipeline.sampling.hf import TransformersSampler

    mdl, tok = load_model(tiny_model)
    head = mdl.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[choice_token_ids(tok)[0]] = 100.0  # "1" wins whatever the pair
    mdl.set_output_embeddings(biased)
    rows = _pairs([1, 2, 2, 1, 2, 2])
    m = judgement_accuracy(TransformersSampler(mdl, tok), tok, rows, "valid_unseen", 0, 1, judgement="choice")
    assert m.value == pytest.approx(2 / 6) and m.outcomes == [1, 0, 0, 1, 0, 0]
    assert m.detail["parsed"] == 6 and m.detail["picked_slot_1"] == 6 and m.detail["judgement"] == "choice"
    assert m.detail["expert_prob"] == pytest.approx(2 / 6, abs=1e-3)
    assert m.items == [f"p{i}" for i in range(6)] and m.clusters == ["g0", "g1"] * 3


def test_choice_act_gives_every_completion_an_answer_and_saves_an_unrestricted_model(tmp_path, tiny_model):
    from act_pipeline.training.act_grpo import train_act

    rows = _pairs([1, 2, 1, 2, 2, 1, 1, 2])
    out = tmp_path / "act"
    res = train_act(tiny_model, rows, out, ACTConfig(answer="choice", max_steps=3, per_device_train_batch_size=4,
                                                     num_generations=4, max_completion_length=6, learning_rate=1e-4,
                                                     probe_every=3, probe_pairs=4),
                    history_len=1, heldout=_pairs([2, 1, 2, 1]), log=lambda m: None)
    rewards = [h["reward"] for h in res["log_history"] if "reward" in h]
    assert len(rewards) == 3 and all(0.0 <= r <= 1.0 for r in rewards)  # never the unparsable penalty
    lengths = [h["completions/mean_length"] for h in res["log_history"] if "completions/mean_length" in h]
    assert lengths and all(n == 1 for n in lengths)  # one answer token each
    assert res["answer"] == "choice"
    assert [c["step"] for c in res["judgement_curve"]] == [0, 3]
    assert all(c["parsed"] == 4 and c["expert_prob"] is not None for c in res["judgement_curve"])
    gen = json.loads((out / "generation_config.json").read_text()) if (out / "generation_config.json").exists() else {}
    assert not gen.get("suppress_tokens")  # the restriction was for training's sampling only
