"""bfloat16 matrix products on a CPU through oneDNN's prepacked weights (inference only).

``F.linear`` on a bfloat16 CPU tensor runs oneDNN, which lays the weight out in its blocked format
again at every call. :func:`pack_linears` makes each ``nn.Linear`` of a model keep that layout
(``torch.ops.mkldnn._reorder_linear_weight``) and multiply with it
(``torch.ops.mkldnn._linear_pointwise``): what Inductor's CPU freezing does for bf16 linears,
without compiling. The kernel and its accumulation are the same, so the products are bit-identical
(``tests/test_packed_linear.py`` checks it on whichever CPU runs the tests: it was measured on an AMX
Xeon; benchmarks/: the tokens lines' lever). On the 2-core Xeon with AMX (the suite's tokens run
with the code of 1ae2581) it decoded the 135M model 1.12x faster at batch 1 and 1.16x at batch 16,
and encoded a 400-token prompt 1.11x faster.

Safety: the packed copy is used only when no gradient is being taken, for bfloat16 inputs on the
CPU; otherwise the module multiplies as before. A weight changed in place (its version counter) or
replaced is packed again before its next use, so a stale copy is never read. The copy costs the
weight's size again in memory.

``load_model(..., dtype="bfloat16")`` applies it on a CPU; ``ACT_PACKED_LINEAR=0`` turns it off.
"""

from __future__ import annotations

import os
import types
import weakref

import torch
import torch.nn.functional as F

BATCH_HINT = 16  # oneDNN's layout hint (rows of a decoding batch); any row count may use the packed weight

_PACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (weight, version, packed)


def available() -> bool:
    """Whether this torch and CPU run bfloat16 products in oneDNN (AVX512-BF16 or AMX), and the user
    has not turned it off (``ACT_PACKED_LINEAR=0``)."""
    if os.environ.get("ACT_PACKED_LINEAR", "1") == "0":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _packed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if (x.dtype != torch.bfloat16 or w.dtype != torch.bfloat16 or x.device.type != "cpu" or x.dim() < 2
            or (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))):
        return F.linear(x, w, self.bias)
    entry = _PACKS.get(self)
    if entry is None or entry[0] is not w or entry[1] != w._version:
        entry = (w, w._version, torch.ops.mkldnn._reorder_linear_weight(w.detach(), BATCH_HINT))
        _PACKS[self] = entry
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), entry[2], self.bias, "none", [], "")


def pack_linears(model: torch.nn.Module) -> int:
    """Route the bfloat16 CPU ``nn.Linear`` s of ``model`` through packed weights (packed on first
    use); returns how many. Nothing changes where :func:`available` is false.

    >>> lin = torch.nn.Linear(8, 4, bias=False).to(torch.bfloat16)
    >>> n = pack_linears(lin)
    >>> n == (1 if available() else 0)
    True
    >>> x = torch.randn(3, 8).to(torch.bfloat16)
    >>> with torch.inference_mode():
    ...     torch.equal(lin(x), F.linear(x, lin.weight))
    True
    >>> unpack_linears(lin)
    """
    if not available():
        return 0
    n = 0
    for m in model.modules():
        if (isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"
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


def is_packed(module: torch.nn.Module) -> bool:
    """Whether :func:`pack_linears` routed ``module`` through packed weights."""
    return getattr(module.__dict__.get("forward"), "__func__", None) is _packed_forward
