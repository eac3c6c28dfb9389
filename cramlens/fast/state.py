"""What the fast path keeps on a model: its settings, the derived-weight caches, and the tests that send a module
back to TransformerLens's own code (a hook that could observe it).

Two private torch attributes are read here, because torch has no public way to ask the question:

- ``Module._forward_hooks`` / ``_forward_pre_hooks`` / ``_backward_hooks`` / ``_backward_pre_hooks`` and the
  ``torch.nn.modules.module._global_*`` dicts: whether *any* hook is registered. TransformerLens's public
  ``HookPoint.has_hooks()`` sees only hooks added through ``add_hook``; a raw ``register_forward_hook`` on a hook
  point (or a global module hook) must also switch the module to TL's code, or it would silently not fire.
- ``Tensor._version``: the in-place version counter, the only cheap signal that a weight was edited in place
  (``load_state_dict``, ``param.data.copy_``, an ablation) without re-reading every weight on every forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class FastState:
    """What ``optimize`` attached to a model (``model._cramlens_fast``)."""

    precision: str = "fp32"
    modules: list[nn.Module] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"fast_attn": 0, "tl_attn": 0})

    def compute_dtype(self, weight: torch.Tensor) -> torch.dtype:
        """GEMM dtype for a module whose weights are ``weight``: bf16 when asked, else the weights' own dtype
        (an fp32 model stays fp32; a model loaded in bf16/fp16 is not silently upcast)."""
        return torch.bfloat16 if self.precision == "bf16" else weight.dtype


@dataclass
class _Entry:
    """Derived weights in one dtype, valid while the source parameters are unchanged."""

    key: tuple = ()
    tensors: dict[str, torch.Tensor | None] = field(default_factory=dict)


class WeightCache:
    """Derived weight layouts of one module, per dtype, rebuilt when a source parameter changes."""

    def __init__(self) -> None:
        self._entries: dict[torch.dtype, _Entry] = {}

    @property
    def dtypes(self) -> list[torch.dtype]:
        return list(self._entries)

    def get(
        self,
        sources: tuple[torch.Tensor, ...],
        build: Callable[..., dict[str, torch.Tensor]],
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor | None]:
        """``build(*sources)`` cast to ``dtype``: cached, or built differentiably when weight grads are wanted."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in sources):
            return {k: v.to(dtype) for k, v in build(*sources).items()}  # weight grads requested: no cache
        key = tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in sources)
        entry = self._entries.setdefault(dtype, _Entry())
        if entry.key != key:
            with torch.no_grad():
                built = {k: v.to(dtype).contiguous() for k, v in build(*sources).items()}
                # an all-zero bias (Llama-family models have none; TL stores zeros) is dropped: ``addmm`` would
                # first copy the broadcast bias into the [rows, out] result, which for the unembedding is M x d_vocab
                entry.tensors = {
                    k: (None if k.startswith("b") and not bool(v.any()) else v) for k, v in built.items()
                }
            entry.key = key
        return entry.tensors


def observed(module: nn.Module | None) -> bool:
    """True when a hook (TL's or a raw PyTorch one) could observe this module (usually a hook point)."""
    if module is None:
        return False
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def global_hooks() -> bool:
    """True when a global ``nn.Module`` hook is registered (it would see every module: no fast path anywhere)."""
    m = torch.nn.modules.module
    return bool(
        m._global_forward_hooks
        or m._global_forward_pre_hooks
        or m._global_backward_hooks
        or m._global_backward_pre_hooks
    )


@contextlib.contextmanager
def maybe_autocast(state: FastState, device_type: str) -> Iterator[None]:
    """bf16 autocast for TL's own code when the fast path runs in bf16 (and autocast is not already on)."""
    if state.precision == "fp32" or torch.is_autocast_enabled(device_type):
        yield
    else:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
