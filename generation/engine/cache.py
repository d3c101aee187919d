"""Slot cache for MLA: per attention sublayer and token, only the compressed KV and the rope key.

Layout ``[sublayers, slots, max_len, kv_lora_rank + qk_rope_head_dim]``: one slot holds one
sequence (one candidate). The latent and the rope key sit side by side so a decode step reads
one tensor per sublayer; the key for the absorbed score is the whole row and the value is its
first ``kv_lora_rank`` columns (see attention.py).
"""
from __future__ import annotations

import torch


class CacheFullError(RuntimeError):
    pass


def sublayer_count(config) -> int:
    # LongCat decoder layers hold two attention sublayers each.
    return 2 * config.num_layers


def bytes_per_token(config, dtype: torch.dtype) -> int:
    width = config.kv_lora_rank + config.qk_rope_head_dim
    return sublayer_count(config) * width * torch.empty((), dtype=dtype).element_size()


def slots_for_budget(config, dtype: torch.dtype, max_len: int, memory_budget_bytes: int) -> int:
    return memory_budget_bytes // (bytes_per_token(config, dtype) * max_len)


class SlotCache:
    """Preallocated compressed-KV cache with a free list of slots."""

    def __init__(self, config, num_slots: int, max_len: int, dtype=torch.float32, device="cpu"):
        if num_slots < 1:
            raise ValueError("the memory budget does not fit a single sequence of max_len tokens")
        self.kv_lora_rank = config.kv_lora_rank
        self.rope_dim = config.qk_rope_head_dim
        self.num_slots = num_slots
        self.max_len = max_len
        self.data = torch.zeros(
            sublayer_count(config), num_slots, max_len, self.kv_lora_rank + self.rope_dim, dtype=dtype, device=device
        )
        self._free = list(range(num_slots))

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    @property
    def bytes_per_token(self) -> int:
        return self.data.shape[0] * self.data.shape[-1] * self.data.element_size()

    def allocate(self, count: int) -> list[int]:
        if count > len(self._free):
            raise CacheFullError(f"{count} slots wanted, {len(self._free)} free")
        # lowest slots first keeps running slots contiguous, so decode can read a view
        self._free.sort()
        taken, self._free = self._free[:count], self._free[count:]
        return taken

    def release(self, slots: list[int]) -> None:
        for slot in slots:
            if slot in self._free:
                raise ValueError(f"slot {slot} released twice")
        self._free.extend(slots)

    def share_prefix(self, src: int, dsts: list[int], length: int) -> None:
        """Copy the prompt's cache rows of ``src`` into ``dsts`` (the n candidates share one prefill)."""
        if dsts:
            self.data[:, dsts, :length] = self.data[:, src : src + 1, :length]
