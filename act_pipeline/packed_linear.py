"""Inference matrix products on a CPU through prepacked weights: the same numbers, faster.

``F.linear`` lays the weight out for its kernel again at every call. :func:`pack_linears` makes
each ``nn.Linear`` of a model keep a packed copy, as Inductor's CPU freezing does, without compiling:

- **bfloat16** (CPUs with AVX512-BF16 or AMX): oneDNN's blocked layout
  (``torch.ops.mkldnn._reorder_linear_weight``, applied with ``torch.ops.mkldnn._linear_pointwise``),
  at every row count. It is the kernel ``F.linear`` runs for bf16 with the same accumulation, so the
  products are bit-identical (``tests/test_packed_linear.py``). On the 2-core AMX Xeon (the suite's
  tokens run with the code of 1ae2581) it decoded the 135M model 1.12x faster at batch 1 and 1.16x
  at batch 16, and encoded a 400-token prompt 1.11x faster.
- **float32**: MKL's packed GEMM (``torch.ops.mkl._mkl_reorder_linear_weight`` /
  ``torch.ops.mkl._mkl_linear``) for inputs of exactly ``BATCH_HINT`` (16) rows: a decoding step of
  the sampler's batch (4 prompts x K=4). MKL packs for one row count; other row counts take the plain
  product. On the AMX Xeon, one thread, MKL's 16-row products of the 135M model's shapes ran
  1.5-1.8x faster packed and equalled the plain ones bit for bit (an ad-hoc probe, 2026-12-03; the
  suite's measurement is the tokens_b16 line's lever); with a packed row count below 16 MKL runs
  another kernel whose numbers differ from the plain product's, so none is used there.
  Because that identity is MKL's and the CPU's, not a property of the API, each module's first packed
  product is compared with the plain one (per thread count): a module whose numbers differ keeps
  the plain product for good (:func:`verified`).

Safety: the packed copy is used only when no gradient is being taken and on the CPU; otherwise the
module multiplies as before. A weight changed in place (its version counter) or replaced is packed
again before its next use, so a stale copy is never read. The copy costs the weight's size again in
memory, made at the first product that uses it (float32: the first 16-row one).

``load_model(..., inference=True)`` (sampling, scoring, evaluation) and ``dtype="bfloat16"`` apply it
on a CPU: bfloat16 by default; float32 only with ``ACT_PACKED_LINEAR=all``, because in the default
profile's runs with float32 inference (two pairs, 2026-12-03, the AMX Xeon, ``--jobs 2``) it won
nothing end to end: with two processes on two cores the packed 16-row decoding gained 1.03-1.05x
(alone 1.26x), and each evaluation, which loads a model per arm, took 0.1-0.5 min longer packed in
all four comparisons. ``ACT_PACKED_LINEAR=0`` turns packing off.
"""

from __future__ import annotations

import os
import types
import weakref

import torch
import torch.nn.functional as F

BATCH_HINT = 16  # oneDNN's layout hint; MKL's packed row count (float32 products of other row counts are plain)

_PACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (weight, version, packed)
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {threads: packed == plain}


def enabled(dtype: torch.dtype) -> bool:
    """Whether :func:`pack_linears` packs ``dtype`` by default: :func:`available`, and wanted by
    ``ACT_PACKED_LINEAR`` (unset or ``1``: bfloat16; ``all``: bfloat16 and float32; ``0``: none)."""
    setting = os.environ.get("ACT_PACKED_LINEAR", "1")
    wanted = {"0": (), "all": (torch.bfloat16, torch.float32)}.get(setting, (torch.bfloat16,))
    return dtype in wanted and available(dtype)


def available(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether this torch and CPU have packed products for ``dtype`` (bfloat16: native bf16 in
    oneDNN, AVX512-BF16 or AMX; float32: MKL)."""
    try:
        if dtype == torch.bfloat16:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if dtype == torch.float32:
            return bool(torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear"))
    except (AttributeError, RuntimeError):
        return False
    return False


def _pack(w: torch.Tensor) -> torch.Tensor:
    if w.dtype == torch.bfloat16:
        return torch.ops.mkldnn._reorder_linear_weight(w.detach(), BATCH_HINT)
    return torch.ops.mkl._mkl_reorder_linear_weight(w.detach(), BATCH_HINT)


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if (x.dtype != w.dtype or x.device.type != "cpu" or x.dim() < 2
            or (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))):
        return F.linear(x, w, self.bias)
    fp32 = w.dtype == torch.float32
    if fp32:
        checked = _CHECKED.setdefault(self, {})
        threads = torch.get_num_threads()
        # MKL's packed weight is for BATCH_HINT rows only; a module whose packed numbers differed: plain
        if x.numel() != BATCH_HINT * x.shape[-1] or checked.get(threads) is False:
            return F.linear(x, w, self.bias)
    entry = _PACKS.get(self)
    if entry is None or entry[0] is not w or entry[1] != w._version:
        entry = (w, w._version, _pack(w))
        _PACKS[self] = entry
    if not fp32:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), entry[2], self.bias, "none", [], "")
    y = torch.ops.mkl._mkl_linear(x.contiguous(), entry[2], w, self.bias, BATCH_HINT)
    if threads not in checked:  # the first packed product on this thread count: the same numbers?
        plain = F.linear(x, w, self.bias)
        checked[threads] = torch.equal(y, plain)
        return plain
    return y


def pack_linears(model: torch.nn.Module, dtypes: tuple[torch.dtype, ...] | None = None) -> int:
    """Route the CPU ``nn.Linear`` s of ``model`` whose weights have one of ``dtypes`` (None: those
    :func:`enabled` by default) through packed weights (packed on first use); returns how many.
    Nothing changes for a dtype :func:`available` refuses.

    >>> lin = torch.nn.Linear(8, 4, bias=False)
    >>> n = pack_linears(lin, (torch.float32,))
    >>> n == (1 if available(torch.float32) else 0)
    True
    >>> x = torch.randn(16, 8)
    >>> with torch.inference_mode():
    ...     torch.equal(lin(x), F.linear(x, lin.weight))
    True
    >>> unpack_linears(lin)
    >>> bf = torch.nn.Linear(8, 4, bias=False).to(torch.bfloat16)
    >>> pack_linears(bf, (torch.bfloat16,)) == (1 if available(torch.bfloat16) else 0)
    True
    >>> with torch.inference_mode():
    ...     torch.equal(bf(x[:3].to(torch.bfloat16)), F.linear(x[:3].to(torch.bfloat16), bf.weight))
    True
    """
    ok = {d: enabled(d) if dtypes is None else (d in dtypes and available(d)) for d in (torch.bfloat16, torch.float32)}
    n = 0
    for m in model.modules():
        if (isinstance(m, torch.nn.Linear) and m.weight.device.type == "cpu" and ok.get(m.weight.dtype, False)
                and "forward" not in m.__dict__):
            m.forward = types.MethodType(_packed_forward, m)
            n += 1
    return n


def unpack_linears(model: torch.nn.Module) -> None:
    """Undo :func:`pack_linears` (the packed copies are freed)."""
    for m in model.modules():
        if is_packed(m):
            del m.forward
            _PACKS.pop(m, None)
            _CHECKED.pop(m, None)


def is_packed(module: torch.nn.Module) -> bool:
    """Whether :func:`pack_linears` routed ``module`` through packed weights."""
    return getattr(module.__dict__.get("forward"), "__func__", None) is _packed_forward


def verified(module: torch.nn.Module) -> dict[int, bool]:
    """A float32 packed module's identity checks: thread count -> whether its first packed 16-row
    product equalled the plain one (where False it multiplies plainly). Empty before the first."""
    return dict(_CHECKED.get(module, {}))
