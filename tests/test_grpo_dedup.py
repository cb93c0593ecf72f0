"""One model forward per distinct prompt for one-token GRPO completions (``act.answer: choice``):
the same per-token log-probabilities, entropies and gradients as TRL's ``GRPOTrainer``, fewer rows
through the model, and the same trained critic. A real (tiny) model and real TRL."""

from pathlib import Path

import pytest

from act_pipeline.act.prompts import State, choice_token_ids, critic_prompt
from act_pipeline.config import ACTConfig

from .test_choice_critic import _pairs

# rows of a batch: prompt index (left-padded to one width) and its answer; prompt 1 has no duplicate
# next to it in chunks of 3, row 5's completion is masked out (TRL's label -100)
ORDER = [0, 0, 1, 2, 2, 2, 1]
ANSWER = [1, 2, 1, 2, 2, 1, 2]


@pytest.fixture(scope="module")
def trainer(tiny_model, tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig

    from act_pipeline.models import load_model
    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer

    model, tok = load_model(tiny_model)
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), use_cpu=True, bf16=False,
                      per_device_train_batch_size=4, num_generations=2, max_completion_length=1,
                      temperature=0.7, report_to="none", activation_checkpointing=False)
    return SharedPromptGRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                                   args=args, train_dataset=Dataset.from_list([{"prompt": "x"}] * 4),
                                   processing_class=tok)


@pytest.fixture(scope="module")
def batch(trainer):
    """Critic prompts of three lengths (so the batch is left-padded), each followed by its answer token."""
    import torch

    tok = trainer.processing_class
    rows = _pairs([1, 2, 1])
    rows[1]["observation"] = "You see a sink 1, a shelf 1 and a desk 1."
    rows[2]["history"] = [{"action": "look", "observation": "You look around. " * 6}]
    prompts = [critic_prompt(tok, State.from_row(r), r["action_1"], r["action_2"], 1) for r in rows]
    tok.padding_side = "left"
    enc = tok([prompts[i] for i in ORDER], add_special_tokens=False, padding=True, return_tensors="pt")
    assert len(set(enc["attention_mask"].sum(1).tolist())) == 3
    answers = torch.tensor([choice_token_ids(tok)[a - 1] for a in ANSWER])[:, None]
    ids = torch.cat([enc["input_ids"], answers], dim=1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(answers)], dim=1)
    mask[5, -1] = 0
    return ids, mask


def _run(trainer, method, ids, mask, batch_size=None):
    """Log-probabilities, entropies and the gradients of a GRPO-like loss built from both."""
    import torch

    model = trainer.model
    model.zero_grad()
    logps, entropies, _ = method(trainer, model, ids, mask, 1, batch_size=batch_size, compute_entropy=True)
    weights = torch.linspace(-1.0, 1.0, ids.size(0))[:, None]
    ((logps * weights).sum() - 0.3 * entropies.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return logps.detach(), entropies.detach(), grads


def _backbone_rows(trainer):
    """A list that each forward of the model's backbone appends its number of rows to, and its hook."""
    rows: list[int] = []
    hook = trainer.model.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(int(kwargs["input_ids"].size(0))), with_kwargs=True)
    return rows, hook


@pytest.mark.parametrize("batch_size", [None, 3])
def test_shared_prompts_give_trls_log_probs_entropies_and_gradients(trainer, batch, batch_size):
    from trl import GRPOTrainer

    ids, mask = batch
    ours = _run(trainer, type(trainer)._get_per_token_logps_and_entropies, ids, mask, batch_size)
    trl = _run(trainer, GRPOTrainer._get_per_token_logps_and_entropies, ids, mask, batch_size)
    assert ours[0].shape == trl[0].shape == (len(ORDER), 1)
    assert ours[0].flatten().tolist() == pytest.approx(trl[0].flatten().tolist(), abs=1e-6)
    assert ours[1].flatten().tolist() == pytest.approx(trl[1].flatten().tolist(), abs=1e-6)
    assert ours[0][5].item() == 0.0 and ours[1][5].item() == 0.0  # the masked completion
    assert ours[0][0].item() != ours[0][1].item()  # each row scores its own answer
    assert ours[2].keys() == trl[2].keys() and len(trl[2]) > 2
    for name, g in trl[2].items():
        assert (ours[2][name] - g).abs().max().item() <= 1e-5 * max(g.abs().max().item(), 1e-3), name


@pytest.mark.parametrize("batch_size, distinct", [(None, [3]), (3, [2, 1, 1])])
def test_the_model_runs_once_per_distinct_prompt(trainer, batch, batch_size, distinct):
    """Distinct prompts of each chunk TRL makes (``batch_size``): 3 in the whole batch; in chunks of
    3 rows, [0 0 1] [2 2 2] [1]. TRL's own method runs every row."""
    import torch
    from trl import GRPOTrainer

    ids, mask = batch
    rows, hook = _backbone_rows(trainer)
    try:
        with torch.no_grad():
            trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 1, batch_size=batch_size)
        ours = list(rows)
        rows.clear()
        with torch.no_grad():
            GRPOTrainer._get_per_token_logps_and_entropies(trainer, trainer.model, ids, mask, 1, batch_size=batch_size)
    finally:
        hook.remove()
    assert ours == distinct
    assert sum(rows) == len(ORDER)


def test_longer_completions_and_distinct_rows_take_trls_path(trainer, batch):
    import torch
    from trl import GRPOTrainer

    ids, mask = batch
    for rows_, keep in ((slice(None), 2), ([0, 2, 3], 1)):  # two-token completions; no duplicate prompt
        rows, hook = _backbone_rows(trainer)
        try:
            with torch.no_grad():
                ours = trainer._get_per_token_logps_and_entropies(trainer.model, ids[rows_], mask[rows_], keep,
                                                                  compute_entropy=True)
                trl = GRPOTrainer._get_per_token_logps_and_entropies(trainer, trainer.model, ids[rows_],
                                                                     mask[rows_], keep, compute_entropy=True)
        finally:
            hook.remove()
        assert rows[0] == rows[1] == ids[rows_].size(0)
        assert torch.equal(ours[0], trl[0]) and torch.equal(ours[1], trl[1])


def test_choice_act_trains_the_same_critic_with_shared_prompts(tmp_path, tiny_model, monkeypatch):
    """``train_act`` in choice mode, 2 prompts x 2 answers per step: the weights move, and they end
    as those of TRL's one forward per completion (same seed, so the same answers are drawn)."""
    from safetensors.torch import load_file

    from act_pipeline.training import act_grpo
    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer

    shared = []
    original = SharedPromptGRPOTrainer._shared_prompt_logps
    monkeypatch.setattr(SharedPromptGRPOTrainer, "_shared_prompt_logps",
                        lambda self, *a: shared.append(1) or original(self, *a))
    cfg = ACTConfig(answer="choice", max_steps=3, per_device_train_batch_size=4, num_generations=2,
                    learning_rate=1e-3, seed=3)
    rows = _pairs([1, 2, 1, 2, 2, 1])

    def train(out, shared_prompts):
        grpo = act_grpo.train_grpo
        monkeypatch.setattr(act_grpo, "train_grpo", lambda *a, **kw: grpo(*a, **kw, shared_prompts=shared_prompts))
        try:
            res = act_grpo.train_act(tiny_model, rows, out, cfg, history_len=1, log=lambda m: None)
        finally:
            monkeypatch.setattr(act_grpo, "train_grpo", grpo)
        return res, load_file(str(out / "model.safetensors"))

    res, ours = train(tmp_path / "shared", True)
    assert shared and res["global_step"] == 3  # each step's loss took the shared path
    calls = len(shared)
    trl_res, trl = train(tmp_path / "trl", False)
    assert len(shared) == calls  # TRL's own path, for the comparison
    base = load_file(str(Path(tiny_model) / "model.safetensors"))
    assert ours.keys() == trl.keys()
    moved = [k for k in ours if k in base and (ours[k].float() - base[k].float()).abs().max().item() > 1e-4]
    assert moved, "ACT did not change the weights"
    for k in ours:
        assert (ours[k].float() - trl[k].float()).abs().max().item() <= 1e-5, k
    rewards = [[h["reward"] for h in r["log_history"] if "reward" in h] for r in (res, trl_res)]
    assert rewards[0] == rewards[1]  # the same answers drawn
