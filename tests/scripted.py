"""Stand-ins for a model in metric tests: a chat template without a tokenizer, and a sampler that
answers by rule. The prompts and the metric code are real; a policy whose answers are known gives
a number that is known exactly."""

from act_pipeline.sampling.base import Completion, Sampler


class PlainTemplate:
    """A tokenizer's ``apply_chat_template`` and nothing else: the prompts are real, no model."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, enable_thinking=False):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>\n" for m in messages) + "<assistant>"


TOK = PlainTemplate()


class Scripted(Sampler):
    """Answers each prompt by rule: ``answer(prompt, k)`` for its k-th sample (a str or a
    :class:`Completion`); records the sampling params it was called with."""

    name = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def generate(self, prompts, params, progress=None):
        self.calls.append(params)
        out = []
        for p in prompts:
            cs = [self.answer(p, k) for k in range(params.n)]
            out.append([c if isinstance(c, Completion) else Completion(c) for c in cs])
        return out
