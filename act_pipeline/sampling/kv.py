"""A KV cache that grows in place: transformers' ``DynamicCache`` with its full-attention layers
written into preallocated room instead of concatenated.

``DynamicLayer.update`` appends a decoding step's keys and values with ``torch.cat``, so every
step copies the whole cache of every layer into new tensors: at batch 16 after a 400-token prompt
that is ~300 MB copied per generated token, the largest cost of a CPU decoding step after the
matrix products (benchmarks/: the tokens_b16 line's before/after). :class:`GrowingLayer` keeps its
keys and values in buffers with room to spare and writes each step into the next free positions;
``keys`` / ``values`` are views of the filled part. The attention reads the same numbers in the
same order, so outputs are bit-identical (tests/test_kv_cache.py).

Safety: positions already handed out are never overwritten. Anything that replaces or shortens the
tensors (``crop``, ``batch_repeat_interleave``, ``batch_select_indices``, ``reorder_cache``) leaves
tensors that are not views of the buffer (``crop`` copies its cut), and the next ``update`` moves
them into a fresh buffer.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``update`` writes into a preallocated buffer.

    A new buffer (the first update, or one after another operation replaced the tensors) has room
    for ``headroom`` more positions; an update that outgrows it moves to one with room for at least
    half as many again as it then holds, so the copies stay amortised.

    >>> layer = GrowingLayer(headroom=4)
    >>> k = torch.arange(6.).reshape(1, 1, 3, 2)
    >>> keys, _ = layer.update(k, k)
    >>> keys.shape, layer.capacity
    (torch.Size([1, 1, 3, 2]), 7)
    >>> keys, _ = layer.update(k[..., :1, :] + 10, k[..., :1, :])
    >>> keys[0, 0].tolist(), layer.capacity
    ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [10.0, 11.0]], 7)
    >>> _ = layer.update(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))  # 8 > 7: grows by half
    >>> layer.get_seq_length(), layer.capacity
    (8, 12)
    """

    def __init__(self, headroom: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.headroom = max(0, int(headroom))
        self._kbuf: torch.Tensor | None = None
        self._vbuf: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self._kbuf is None else self._kbuf.shape[-2]

    def _owns(self, t: torch.Tensor | None, buf: torch.Tensor | None) -> bool:
        """Whether ``t`` is the filled part of ``buf`` (not replaced by another operation)."""
        return (t is not None and buf is not None and t.numel() > 0 and t.data_ptr() == buf.data_ptr()
                and t.shape[:-2] == buf.shape[:-2] and t.shape[-1] == buf.shape[-1]
                and t.stride() == buf.stride())

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self.get_seq_length()
        m = key_states.shape[-2]
        owned = self._owns(self.keys, self._kbuf) and self._owns(self.values, self._vbuf)
        if not owned or n + m > self.capacity:
            # room for ``headroom`` more; outgrowing the buffer grows it by half (amortised copies)
            cap = n + m + (self.headroom if not owned else max(self.headroom, (n + m) // 2))
            kb = key_states.new_empty(*key_states.shape[:-2], cap, key_states.shape[-1])
            vb = value_states.new_empty(*value_states.shape[:-2], cap, value_states.shape[-1])
            if n:
                kb[..., :n, :].copy_(self.keys)
                vb[..., :n, :].copy_(self.values)
            self._kbuf, self._vbuf = kb, vb
        self._kbuf[..., n:n + m, :].copy_(key_states)
        self._vbuf[..., n:n + m, :].copy_(value_states)
        self.keys = self._kbuf[..., :n + m, :]
        self.values = self._vbuf[..., :n + m, :]
        return self.keys, self.values

    def reset(self) -> None:
        self._kbuf = self._vbuf = None
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if tokens_to_remove and self.is_initialized:
            # a copy, so that the next update does not overwrite positions a caller may still hold
            self.keys, self.values = self.keys.clone(), self.values.clone()
            self._kbuf = self._vbuf = None


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` whose plain full-attention layers are :class:`GrowingLayer` s (layers of
    other kinds, e.g. sliding windows, stay as transformers builds them).

    >>> from transformers import LlamaConfig
    >>> cache = GrowingCache(headroom=8, config=LlamaConfig(num_hidden_layers=2))
    >>> [type(layer).__name__ for layer in cache.layers]
    ['GrowingLayer', 'GrowingLayer']
    """

    def __init__(self, headroom: int = 64, **kwargs):
        super().__init__(**kwargs)
        if self.layer_class_to_replicate is DynamicLayer:  # no config: layers appended on first use
            self.layer_class_to_replicate = lambda: GrowingLayer(headroom)
        self.layers = [GrowingLayer(headroom) if type(layer) is DynamicLayer else layer for layer in self.layers]


def plain_growable(cache) -> bool:
    """Whether every layer of ``cache`` holds its whole prefix (a plain dynamic or growing layer, no
    sliding window), so that a cut of its keys and values is the cache of a shorter prefix."""
    return all(type(layer) in (DynamicLayer, GrowingLayer) for layer in cache.layers)
