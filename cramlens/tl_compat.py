"""Glue between Hugging Face tokenizers and TransformerLens's HookedTransformer.

- :func:`tokenizer_adds_bos`: whether an HF tokenizer puts BOS first (the model's BOS policy);
- :func:`load_tokenizer_for_tl`: a saved tokenizer loaded the way HookedTransformer wants it;
- :func:`quiet_tl`: silences TransformerLens's "HookedTransformer is deprecated" warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether this HF tokenizer, called plainly, puts its BOS token first."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return bos is not None and len(ids) > 0 and ids[0] == bos


def load_tokenizer_for_tl(path: str | Path) -> Any:
    """Load a saved tokenizer the way TransformerLens wants it (``add_bos_token=True``).

    HookedTransformer always keeps a BOS-adding tokenizer and strips BOS in ``to_tokens`` when
    ``cfg.default_prepend_bos`` is False; handing it one built that way saves it a second load.
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, add_bos_token=True)
    except ValueError:  # a tokenizer without a BOS token cannot be built with add_bos_token=True
        return AutoTokenizer.from_pretrained(path)


@contextmanager
def quiet_tl() -> Iterator[None]:
    """Silence TransformerLens's 'HookedTransformer is deprecated' warnings (it is our chosen API)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*HookedTransformer.*deprecated", category=DeprecationWarning
        )
        yield
