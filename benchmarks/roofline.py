"""The least time a causal LM's forward calls can take on this CPU, from two measured numbers.

* **read bandwidth**: a sum over a float32 array much larger than the caches (bytes / s);
* **matmul peak**: float32 FLOP/s of ``F.linear`` at the model's own shapes (the MLP's
  hidden -> intermediate and back, the attention projection, the LM head) for a 16-row decode
  batch, a 400-token prompt and a 1024-token training batch, and of a 1024² product; the best of
  them is the peak. :func:`model_peak` measures it once per process, so every benchmark line of a
  run (bench_tokens, bench_sampling, bench_rollouts, bench_roofline) states the same peak.

A forward call of B rows, each with T new tokens after P cached ones, needs at least

    FLOPs = B x (2 x body_params x T  +  2 x hidden x vocab  +  4 x hidden x layers x (T x P + T (T + 1) / 2))

(the body: every parameter but the input embedding (a lookup) and the LM head; the head only
for the one position whose next token is wanted; causal attention: scores and the weighted sum
over the positions before each new token) and reads at least

    bytes = every weight once + the KV cache of the B rows (P + T positions).

Its least time is max(FLOPs / peak, bytes / bandwidth). Prompt encoding (T in the hundreds) is
FLOP-bound; decoding one token per row (T = 1) is bandwidth-bound at batch 1.

:class:`ForwardLog` records the forward calls a piece of code makes (rows, new tokens, cached
tokens), so a benchmark can state the least time of the very calls it timed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import torch

PEAK_ROWS = (16, 400, 1024)  # a batch-16 decode step; an ALFWorld-length prompt; a training batch's tokens


def read_bandwidth(gib: float = 0.5, repeats: int = 5) -> dict:
    """Memory bandwidth with torch at the current thread count: a sum over a float32 array much larger
    than the caches (bytes read / s) and a copy (bytes read + written / s); best of ``repeats``."""
    a = torch.ones(int(gib * 2**30 / 4))
    b = torch.empty_like(a)
    nbytes = a.numel() * 4
    read, copy = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        read.append(nbytes / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        b.copy_(a)
        copy.append(2 * nbytes / (time.perf_counter() - t0))
    return {"read_GBps": round(max(read) / 1e9, 2), "copy_GBps": round(max(copy) / 1e9, 2),
            "array_GiB": gib, "repeats": repeats}


def linear_flops(rows: int, k: int, n: int, repeats: int = 3) -> float:
    """float32 FLOP/s of ``F.linear`` of a (rows x k) input with an (n x k) weight (2 rows k n per
    product, as the model computes it) at the current thread count, best of ``repeats`` after a warm-up."""
    x, w = torch.randn(rows, k), torch.randn(n, k)
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            best = max(best, 2 * rows * k * n / (time.perf_counter() - t0))
    return best


def model_shapes(cfg, rows: tuple[int, ...] = PEAK_ROWS) -> dict[str, tuple[int, int, int]]:
    """The model's large matmuls as named (rows, in, out) shapes at each row count, and a 1024² one.

    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(hidden_size=576, intermediate_size=1536, vocab_size=49152)
    >>> model_shapes(cfg, rows=(16,))  # doctest: +NORMALIZE_WHITESPACE
    {'1024x1024@1024x1024': (1024, 1024, 1024), 'mlp_up 16x576@576x1536': (16, 576, 1536),
     'mlp_down 16x1536@1536x576': (16, 1536, 576), 'attn_proj 16x576@576x576': (16, 576, 576),
     'lm_head 16x576@576x49152': (16, 576, 49152)}
    """
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = {"1024x1024@1024x1024": (1024, 1024, 1024)}
    for r in rows:
        shapes[f"mlp_up {r}x{h}@{h}x{i}"] = (r, h, i)
        shapes[f"mlp_down {r}x{i}@{i}x{h}"] = (r, i, h)
        shapes[f"attn_proj {r}x{h}@{h}x{h}"] = (r, h, h)
        shapes[f"lm_head {r}x{h}@{h}x{v}"] = (r, h, v)
    return shapes


def matmul_peak(shapes: dict[str, tuple[int, int, int]], repeats: int = 3) -> dict:
    """The matmul peak of this machine, measured now: float32 GFLOP/s of ``F.linear`` at each named
    (rows, in, out) shape and the best of them (``peak_GFLOPs``, the roofline's compute ceiling).

    >>> p = matmul_peak({"a": (8, 16, 16), "b": (16, 16, 16)}, repeats=1)
    >>> p["peak_GFLOPs"] == max(p["GFLOPs"].values()) > 0 and p["peak_shape"] in ("a", "b")
    True
    """
    each = {name: round(linear_flops(*s, repeats=repeats) / 1e9, 2) for name, s in shapes.items()}
    best = max(each, key=each.get)
    return {"peak_GFLOPs": each[best], "peak_shape": best, "GFLOPs": each,
            "shapes": {k: list(v) for k, v in shapes.items()}, "op": "torch.nn.functional.linear",
            "dtype": "float32", "threads": torch.get_num_threads(), "repeats": repeats}


_MEASURED: dict = {}  # (what, ...) -> measurement: each measured once per process and thread count


def model_peak(cfg, rows: tuple[int, ...] = PEAK_ROWS) -> dict:
    """:func:`matmul_peak` over :func:`model_shapes` of ``cfg``, measured once per process (and
    thread count): every line of a run that asks for the same model's peak gets the same one."""
    key = ("peak", cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, tuple(rows), torch.get_num_threads())
    if key not in _MEASURED:
        _MEASURED[key] = matmul_peak(model_shapes(cfg, rows))
    return _MEASURED[key]


def bandwidth(gib: float = 0.5) -> dict:
    """:func:`read_bandwidth`, measured once per process (and thread count) for each array size."""
    key = ("bandwidth", gib, torch.get_num_threads())
    if key not in _MEASURED:
        _MEASURED[key] = read_bandwidth(gib)
    return _MEASURED[key]


@dataclass
class Roofline:
    params: int
    body_params: int  # every parameter but the input embedding and the LM head
    param_bytes: int
    hidden: int
    attn_dim: int  # heads x head dim
    layers: int
    vocab: int
    kv_bytes_per_token: int  # keys and values of one position, every layer
    read_GBps: float
    peak_GFLOPs: float
    bandwidth: dict = field(default_factory=dict)
    peak: dict = field(default_factory=dict)

    def flops(self, rows: int, new: int, past: int) -> float:
        attn = 4 * self.attn_dim * self.layers * (new * past + new * (new + 1) / 2)
        return rows * (2 * self.body_params * new + 2 * self.hidden * self.vocab + attn)

    def bytes(self, rows: int, new: int, past: int) -> float:
        return self.param_bytes + rows * self.kv_bytes_per_token * (past + new)

    def call_s(self, rows: int, new: int, past: int = 0) -> float:
        """Least seconds of one forward call (see the module's docstring)."""
        return max(self.flops(rows, new, past) / (self.peak_GFLOPs * 1e9),
                   self.bytes(rows, new, past) / (self.read_GBps * 1e9))

    def bound_by(self, rows: int, new: int, past: int = 0) -> str:
        fl = self.flops(rows, new, past) / (self.peak_GFLOPs * 1e9)
        return "compute" if fl >= self.bytes(rows, new, past) / (self.read_GBps * 1e9) else "memory bandwidth"

    def brief(self) -> dict:
        """What a result line states of the roofline it was measured against."""
        return {"read_GBps": self.read_GBps, "peak_GFLOPs": self.peak_GFLOPs, "peak_shape": self.peak["peak_shape"]}

    def as_dict(self) -> dict:
        return {**asdict(self), "threads": torch.get_num_threads(), "derivation": __doc__.split("\n\n", 1)[1].strip()}


def measure(model, quick: bool = False) -> Roofline:
    """The roofline of ``model`` on this machine (bandwidth and peak measured once per process)."""
    cfg = model.config
    bw = bandwidth(0.25 if quick else 0.5)
    peak = model_peak(cfg)
    params = sum(p.numel() for p in model.parameters())
    pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    body = params - emb.numel() - (0 if head is emb or head.data_ptr() == emb.data_ptr() else head.numel())
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    return Roofline(params=params, body_params=body, param_bytes=pbytes, hidden=cfg.hidden_size,
                    attn_dim=heads * head_dim, layers=cfg.num_hidden_layers, vocab=cfg.vocab_size,
                    kv_bytes_per_token=2 * cfg.num_hidden_layers * kv_heads * head_dim * emb.element_size(),
                    read_GBps=bw["read_GBps"], peak_GFLOPs=peak["peak_GFLOPs"], bandwidth=bw, peak=peak)


class ForwardLog:
    """Records the forward calls of ``model`` while :meth:`record` runs a function: per call the
    rows, the new tokens per row, the tokens already in the cache and the seconds inside the call.
    ``seconds`` is the time spent inside the calls (the time outside them is the Python around the
    model: sampling, stopping, cache bookkeeping).

    >>> lin = torch.nn.Linear(4, 4)
    >>> log = ForwardLog(lin)
    >>> _ = log.record(lambda: (lin(torch.ones(2, 3, 4)), lin(torch.ones(2, 1, 4))))
    >>> [c[:3] for c in log.calls], all(c[3] > 0 for c in log.calls)
    ([(2, 3, 0), (2, 1, 0)], True)
    """

    def __init__(self, model):
        self.model = model
        self.calls: list[tuple[int, int, int, float]] = []  # (rows, new tokens, cached tokens, seconds)
        self.seconds = 0.0
        self.attention: list[tuple[int, float]] = []  # (query length, seconds) per attention call

    def record(self, fn):
        """Run ``fn()`` and record the model's forward calls, and its attention calls: the model's
        attention function (transformers' ``AttentionInterface`` entry for its
        ``_attn_implementation``) is timed through a local override of that entry, put back after."""
        self.calls, self.seconds, self.attention = [], 0.0, []
        open_calls = []  # (rows, new, past, start) of the calls entered and not yet left

        def pre(_mod, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                ids = kwargs["inputs_embeds"]
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
            open_calls.append((int(ids.shape[0]), int(ids.shape[1]), past, time.perf_counter()))

        def post(_mod, _args, _kwargs, _out):
            rows, new, past, t0 = open_calls.pop()
            dt = time.perf_counter() - t0
            self.calls.append((rows, new, past, dt))
            self.seconds += dt

        h1 = self.model.register_forward_pre_hook(pre, with_kwargs=True)
        h2 = self.model.register_forward_hook(post, with_kwargs=True)
        try:
            with self._timed_attention():
                return fn()
        finally:
            h1.remove()
            h2.remove()

    @contextlib.contextmanager
    def _timed_attention(self):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        impl = getattr(getattr(self.model, "config", None), "_attn_implementation", None)
        if impl is None or impl not in ALL_ATTENTION_FUNCTIONS:  # eager, or no transformers model: not timed
            yield
            return
        inner = ALL_ATTENTION_FUNCTIONS[impl]

        def timed(module, query, *args, **kwargs):
            t0 = time.perf_counter()
            out = inner(module, query, *args, **kwargs)
            self.attention.append((int(query.shape[-2]), time.perf_counter() - t0))
            return out

        ALL_ATTENTION_FUNCTIONS[impl] = timed  # the instance's local mapping; the library's global one is untouched
        try:
            yield
        finally:
            ALL_ATTENTION_FUNCTIONS[impl] = inner

    def products(self, repeats: int = 2) -> dict:
        """The recorded calls' matrix products alone, at their own shapes (:func:`linear_floor` over
        the model's real weights): a call of ``rows`` x ``new`` tokens applies the body's products to
        rows x new inputs and the LM head to ``rows`` (prompt encoding keeps the last position's
        logits only; a decoding step has one position). What the calls would take on this machine's
        BLAS were everything else (attention, norms, activations, Python) free; against the bound it
        says how much of it the products alone leave reachable.

        >>> net = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256))
        >>> log = ForwardLog(net)
        >>> log.calls = [(8, 128, 0, 0.1), (8, 1, 128, 0.01)]  # 1024 rows through the body, then 8
        >>> p = log.products(repeats=1)
        >>> sorted(p), p["prefill_products_s"] > p["decode_products_s"] > 0
        (['decode_products_s', 'prefill_products_s', 'products_s'], True)
        """
        floors: dict[int, dict] = {}

        def floor(rows: int) -> dict:
            if rows not in floors:
                floors[rows] = linear_floor(self.model, rows, repeats)
            return floors[rows]

        pre = sum(floor(r * n)["body_s"] + floor(r)["head_s"] for r, n, _, _ in self.calls if n > 1)
        dec = sum(floor(r)["seconds"] for r, n, _, _ in self.calls if n == 1)
        return {"products_s": round(pre + dec, 5), "prefill_products_s": round(pre, 5),
                "decode_products_s": round(dec, 5)}

    def summary(self, roof: Roofline) -> dict:
        """The least time of the recorded calls, split into prompt encoding (T > 1) and decoding,
        beside the seconds the calls of each kind took (``prefill_s`` / ``decode_s``) and each kind's
        fraction of its bound (bound / measured)."""
        pre = [c for c in self.calls if c[1] > 1]
        dec = [c for c in self.calls if c[1] == 1]
        pre_s = sum(roof.call_s(*c[:3]) for c in pre)
        dec_s = sum(roof.call_s(*c[:3]) for c in dec)
        pre_m = sum(c[3] for c in pre)
        dec_m = sum(c[3] for c in dec)
        return {"bound_s": round(pre_s + dec_s, 4), "prefill_bound_s": round(pre_s, 4),
                "decode_bound_s": round(dec_s, 4), "prefill_calls": len(pre),
                "prefill_tokens": sum(c[0] * c[1] for c in pre), "decode_steps": len(dec),
                "decode_rows": sum(c[0] for c in dec), "forward_s": round(self.seconds, 4),
                "prefill_s": round(pre_m, 4), "decode_s": round(dec_m, 4),
                "prefill_fraction": round(pre_s / pre_m, 3) if pre_m else None,
                "decode_fraction": round(dec_s / dec_m, 3) if dec_m else None,
                **self.attention_summary()}

    def attention_summary(self) -> dict:
        """The recorded attention calls' seconds as they ran inside the forward calls (the attention
        kernel with its masking and GQA handling; not the q/k/v/o products, which
        :meth:`products` counts), split into prompt encoding (query length > 1) and decoding.
        Empty where the attention was not timed.

        >>> log = ForwardLog(torch.nn.Linear(2, 2))
        >>> log.attention = [(400, 0.25), (1, 0.5), (1, 0.5)]
        >>> log.attention_summary()
        {'attention_s': 1.25, 'prefill_attention_s': 0.25, 'decode_attention_s': 1.0, 'attention_calls': 3}
        """
        if not self.attention:
            return {}
        pre = sum(s for q, s in self.attention if q > 1)
        dec = sum(s for q, s in self.attention if q == 1)
        return {"attention_s": round(pre + dec, 5), "prefill_attention_s": round(pre, 5),
                "decode_attention_s": round(dec, 5), "attention_calls": len(self.attention)}


def _linears(model) -> list:
    """The ``nn.Linear`` modules of ``model`` in module order, its output embedding (LM head) last."""
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, torch.nn.Linear) and head in lins:
        lins = [m for m in lins if m is not head] + [head]
    return lins


def linear_floor(model, rows: int, repeats: int = 3, packed: bool = False) -> dict:
    """The time of one forward call's matrix products alone: every ``nn.Linear`` of ``model`` (its
    real weights, in module order, the LM head last) applied to a (rows x in) input, as a decoding
    step of ``rows`` sequences applies them; best of ``repeats`` after a warm-up. ``body_s`` is all
    but the last product, ``head_s`` the last (the LM head).

    It is what this machine's BLAS takes at the step's own shapes (a 16-row product runs below the
    peak that the roofline takes from its best shape), so a step's measured time splits into these
    products and everything else (attention, norms, activations, the Python around the model).
    With ``packed`` the weights are first reordered for MKL's packed GEMM
    (``torch.ops.mkl._mkl_reorder_linear_weight``, what Inductor's CPU freezing uses) and applied
    with ``torch.ops.mkl._mkl_linear``; ``identical`` / ``max_abs_diff`` then compare its products
    with the plain ones.

    >>> tiny = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    >>> f = linear_floor(tiny, rows=2, repeats=1)
    >>> f["linears"], f["seconds"] > 0, f["seconds"] >= f["head_s"]
    (2, True, True)
    """
    import torch.nn.functional as F

    weights = [m.weight.detach() for m in _linears(model)]
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(rows, w.shape[1], generator=gen) for w in weights]
    with torch.inference_mode():
        if packed:
            pw = [torch.ops.mkl._mkl_reorder_linear_weight(w, rows) for w in weights]
            prods = [lambda x, w=w, p=p: torch.ops.mkl._mkl_linear(x, p, w, None, rows) for w, p in zip(weights, pw)]
        else:
            prods = [lambda x, w=w: F.linear(x, w) for w in weights]
        outs = [f(x) for f, x in zip(prods, xs)]  # warm-up
        best = (float("inf"), 0.0, 0.0)
        for _ in range(repeats):
            t0 = time.perf_counter()
            for f, x in zip(prods[:-1], xs[:-1]):
                f(x)
            t1 = time.perf_counter()
            prods[-1](xs[-1])
            t2 = time.perf_counter()
            best = min(best, (t2 - t0, t1 - t0, t2 - t1))
        out = {"rows": rows, "linears": len(weights), "seconds": round(best[0], 5), "body_s": round(best[1], 5),
               "head_s": round(best[2], 5), "repeats": repeats,
               "op": "torch.ops.mkl._mkl_linear (packed weights)" if packed else "torch.nn.functional.linear"}
        if packed:
            plain = [F.linear(x, w) for x, w in zip(xs, weights)]
            out["identical"] = all(torch.equal(a, b) for a, b in zip(outs, plain))
            out["max_abs_diff"] = float(max((a - b).abs().max() for a, b in zip(outs, plain)))
    return out
