"""TRL's ``GRPOTrainer`` with each distinct prompt encoded once: in generation, and in the training
forward when every completion is one token.

TRL repeats each prompt ``num_generations`` times and its transformers generation encodes every
copy; here each distinct prompt is encoded once and its cache copied to its rows
(:func:`act_pipeline.sampling.repeated.generate_repeated_prompts`). The draws are the same as
TRL's from the same seed (the logits agree to float rounding).

In training, with ``act.answer: choice`` each GRPO completion is a single token right after the
prompt, so the ``num_generations`` rows of one prompt differ only in their last token, and that token's
log-probability (and the entropy there) depends only on the hidden state at the last prompt
position, the same for all of them. TRL runs the whole row through the model once per row; here
the model's backbone runs once per distinct prompt in a chunk, its last hidden state is handed to
every row of that prompt (``index_select``: the gradients of the rows add up on it, as they would
over separate copies), and TRL's own fused LM head (temperature, soft-capping, entropy) scores
each row's own completion token. Anything else (longer completions, multimodal inputs, MoE
auxiliary losses, a chunk without duplicates) goes to TRL's method unchanged.

A batch whose loss has no gradient skips the model: when every advantage of a micro-batch is 0
(each group's rewards were all equal, TRL's ``frac_reward_zero_std`` = 1), β = 0 and the loss has
no entropy bonus or auxiliary term, every term of TRL's loss is a product with an advantage, so its
gradient is exactly zero. TRL still runs the forward and backward through the whole model for it;
here each parameter gets a zero gradient without them, and the optimizer step that follows is
the same (AdamW moves a weight with its moments and weight decay, both unchanged by a zero
gradient). What is not computed is TRL's diagnostics of that pass (the completions' entropy, clip
ratios): they are missing from that step's log, and ``zero_advantage_skipped`` (the share of its
micro-batches skipped) is logged instead.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from accelerate.utils import is_peft_model
from trl import GRPOTrainer


class SharedPromptGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that runs each distinct prompt once: in generation (any completion length;
    :meth:`_generate_single_turn`) and, for one-token completions, in the training forward
    (tests/test_grpo_dedup.py: the same log-probabilities, entropies and gradients as TRL's;
    tests/test_grpo_generation.py: the same sequences and logits in generation; both: the same
    draws and the same trained weights as TRL's trainer)."""

    encode_prompts_once = True  # in generation; False: TRL's, each copy encoded (the benchmark's before)
    skip_no_gradient = True  # a micro-batch with no gradient skips the model; False: TRL's pass (the benchmark's before)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, or, for a micro-batch whose loss has no gradient (:meth:`no_gradient`), a zero
        loss that gives every trainable parameter a zero gradient without running the model
        (tests/test_grpo_zero_advantage.py: the same trained weights as TRL's pass)."""
        if not return_outputs and self.model.training:
            skip = self.skip_no_gradient and self.no_gradient(inputs)
            self._metrics["train"]["zero_advantage_skipped"].append(float(skip))
            if skip:
                return zero_loss(model)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def no_gradient(self, inputs) -> bool:
        """Whether TRL's loss on ``inputs`` has a zero gradient: every advantage 0, no KL term (β = 0),
        no entropy bonus or MoE auxiliary loss, a loss type whose every term is a product with the
        advantage, one process without DeepSpeed or FSDP (where a skipped backward would leave the
        other ranks' collectives waiting)."""
        adv = inputs.get("advantages")
        return (adv is not None and not bool(torch.any(adv != 0)) and self.beta == 0.0
                and not getattr(self, "_entropy_bonus_enabled", True) and not self.aux_loss_enabled
                and self.loss_type in ZERO_WITH_ADVANTAGE and self.accelerator.num_processes == 1
                and not self.is_deepspeed_enabled and not self.is_fsdp_enabled)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's transformers generation, each distinct prompt encoded once: TRL repeats every prompt
        ``num_generations`` times and ``generate`` would encode each copy
        (:func:`act_pipeline.sampling.repeated.generate_repeated_prompts`). vLLM, continuous
        batching and multimodal inputs take TRL's path unchanged."""
        def trl():
            return super(SharedPromptGRPOTrainer, self)._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

        if (not self.encode_prompts_once or self.use_vllm or self.use_transformers_continuous_batching or images
                or multimodal_fields):
            return trl()
        with repeated_prompts_encoded_once(self.accelerator.unwrap_model(self.model_wrapped)):
            return trl()

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **extra):
        def trl(ids, mask, size=batch_size):
            return super(SharedPromptGRPOTrainer, self)._get_per_token_logps_and_entropies(
                model, ids, mask, logits_to_keep, batch_size=size, compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss, **extra)

        backbone = _backbone(self.accelerator.unwrap_model(model))
        if logits_to_keep != 1 or compute_aux_loss or backbone is None or any(v is not None for v in extra.values()):
            return trl(input_ids, attention_mask)
        size = batch_size or input_ids.size(0)  # TRL's chunks, each with its own duplicates
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), size):
            ids, mask = input_ids[start:start + size], attention_mask[start:start + size]
            first, inverse = distinct_rows(torch.cat([ids[:, :-1], mask[:, :-1]], dim=1))
            if len(first) == ids.size(0):
                lp, ent, _ = trl(ids, mask, ids.size(0))
            else:
                lp, ent = self._shared_prompt_logps(model, backbone, ids, mask, first, inverse, compute_entropy)
            logps.append(lp)
            entropies.append(ent)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    def _shared_prompt_logps(self, model, backbone, ids, mask, first, inverse, compute_entropy):
        """Per-row log-probabilities (and entropies) of the last token of ``ids``, the backbone run on
        the prompts ``ids[first, :-1]`` only. Shapes and masking as TRL's with ``logits_to_keep=1``."""
        # TRL's labels: the completion token, -100 where the completion is masked out
        labels = ids[:, -1:].masked_fill(mask[:, -1:] == 0, -100)
        rows = torch.tensor(inverse, device=ids.device)

        def widen(module, args, output):  # the last prompt position of each distinct prompt, one per row
            output.last_hidden_state = output.last_hidden_state[:, -1:].index_select(0, rows)
            return output

        pick = torch.tensor(first, device=ids.device)
        handle = backbone.register_forward_hook(widen)
        try:
            with self.accelerator.autocast():
                # the fused head scores hidden state t against shift_labels[t]: no shift
                out = model(input_ids=ids[pick, :-1], attention_mask=mask[pick, :-1], shift_labels=labels,
                            fused_lm_head=True)
        finally:
            handle.remove()
        return out.log_probs, out.entropy if compute_entropy else None


# TRL's loss types whose per-token loss is a product with the advantage (trl 1.16 ``_compute_loss``)
ZERO_WITH_ADVANTAGE = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo")


def zero_loss(model) -> torch.Tensor:
    """0, as a function of every trainable parameter of ``model``: its backward gives each a zero
    gradient (a whole tensor of zeros, as a real backward through a loss of 0 would), at the cost of
    writing those zeros.

    >>> m = torch.nn.Linear(2, 3)
    >>> loss = zero_loss(m); loss.backward()
    >>> loss.item() == 0, m.weight.grad.shape, bool((m.weight.grad == 0).all()), bool((m.bias.grad == 0).all())
    (True, torch.Size([3, 2]), True, True)
    """
    return torch.stack([p.reshape(-1)[0] for p in model.parameters() if p.requires_grad]).sum() * 0.0


@contextmanager
def repeated_prompts_encoded_once(model):
    """While it is open, ``model.generate`` encodes each distinct prompt of a batch once
    (:func:`act_pipeline.sampling.repeated.generate_repeated_prompts`). TRL's generation calls the
    model it unwraps, this same object (were it another, that call would run unchanged)."""
    from act_pipeline.sampling.repeated import generate_repeated_prompts

    own = model.__dict__.get("generate")  # an instance attribute of its own, if any, comes back after
    model.generate = partial(generate_repeated_prompts, model, generate=model.generate)
    try:
        yield model
    finally:
        del model.generate
        if own is not None:
            model.generate = own


def distinct_rows(keys: torch.Tensor) -> tuple[list[int], list[int]]:
    """The first row of each distinct row of ``keys`` (in order) and, for every row, the index of its
    distinct row among them.

    >>> distinct_rows(torch.tensor([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]]))
    ([0, 1, 4], [0, 1, 0, 1, 2])
    """
    seen: dict[tuple, int] = {}
    first, inverse = [], []
    for i, row in enumerate(keys.tolist()):
        j = seen.setdefault(tuple(row), len(first))
        if j == len(first):
            first.append(i)
        inverse.append(j)
    return first, inverse


def _backbone(model):
    """The module whose output TRL's fused LM head reads (``add_fused_lm_head``: the model's
    ``base_model`` under transformers 5), or None where that is not a separate text backbone."""
    base = model.get_base_model() if is_peft_model(model) else model
    config = getattr(base, "config", None)
    if config is None or not hasattr(config, "get_text_config") or config.get_text_config() is not config:
        return None  # vision-language models: TRL's path
    backbone = getattr(base, "base_model", None)
    return backbone if isinstance(backbone, torch.nn.Module) and backbone is not base else None
