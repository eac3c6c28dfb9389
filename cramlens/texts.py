"""Text sources for cramming: documents in, fixed-length token windows out.

``load_texts(source, tokenizer, n_samples, seq_len)`` returns ``TextSample`` rows of exactly
``seq_len`` tokens each, tokenized with ``add_special_tokens=False`` (BOS is the model layout's
business, not this module's). Sources (read by ``cramlens.documents``):

- ``"builtin"``: CPython's bundled documentation (``pydoc_data.topics``), real prose present on every
  install; topics in sorted order, then shuffled by ``seed``.
- a local ``.txt`` file (one document), ``.jsonl`` file (field ``text`` per line) or a folder of them
  (searched recursively, files in sorted order); file order is kept, as in the paper (first rows).
- a hub data set through ``datasets`` streaming: ``"pg19"`` (deepmind/pg19, test), ``"pg19_1k"``
  (LarryLovestein/pg19_1k, train; the paper's), or any ``"owner/name"`` with a ``text`` column.
- ``"random-words"``: random whole words from the tokenizer's vocabulary (``cramlens.random_words``).

Each document gives at most one sample: its first window (``offset="start"``, the paper's protocol)
or a seeded random one (``offset="random"``). Documents shorter than ``seq_len`` tokens are skipped and
reported through the ``cramlens.texts`` logger, never padded.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
from dataclasses import dataclass

from cramlens.documents import RANDOM_WORDS, available_sources, iter_documents, resolve_source
from cramlens.errors import CramlensError, check
from cramlens.random_words import random_words_ids

__all__ = ["TextSample", "available_sources", "first_tokens", "iter_documents", "load_texts", "random_window"]

logger = logging.getLogger(__name__)

OFFSETS = ("start", "random")
_MARGIN = 16  # extra tokens a character prefix must hold beyond seq_len (its last word may be cut)


@dataclass(frozen=True)
class TextSample:
    """One text to cram.

    ``token_ids`` holds exactly the requested number of tokens, without BOS; cramming uses them.
    ``text`` is ``tokenizer.decode(token_ids)``, the text exactly as crammed. Re-tokenizing ``text``
    may not give ``token_ids`` back (a window can start or end inside a word, or split a multi-byte
    character), so never rebuild the target from ``text``.
    """

    sample_id: str  # stable id: "<file name>:<row>", "builtin:<topic>", "random-words:<seed>:<index>", ...
    text: str
    token_ids: tuple[int, ...]
    source: str  # "builtin" | "random-words" | file or folder path | hub repo id


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


_WORD_END = re.compile(r"(?<=\S)\s")  # a whitespace character right after a non-whitespace one


def _cut_point(text: str, n_chars: int, reach: int = 2000) -> int:
    """Where a prefix of about n_chars characters may end: right after a whole word.

    The first word end at or after n_chars (within ``reach``), else the last one before it, else the
    whole text (a long run without whitespace is never cut inside).
    """
    m = _WORD_END.search(text, n_chars, n_chars + reach)
    if m:
        return m.start()
    before = [m.start() for m in _WORD_END.finditer(text, max(0, n_chars - reach), n_chars)]
    return before[-1] if before else len(text)


def first_tokens(tokenizer, text: str, seq_len: int) -> list[int] | None:
    """``tokenize(text)[:seq_len]``, or None if the text has fewer tokens, tokenizing only a prefix.

    The prefix starts at ~8 characters per token and doubles until it gives ``seq_len + 16`` tokens.
    It is cut where a word ends (next character is whitespace): with regex pre-tokenizers (GPT-2,
    Llama 3, SmolLM2) no pre-token crosses such a point, so the prefix's tokens are exactly the full
    text's; the 16 spare tokens guard tokenizers without one (SentencePiece). A 16k-character
    document costs one tokenization of ~8·seq_len characters.
    """
    n_chars = max(8 * seq_len, 256)
    while True:
        cut = len(text) if n_chars >= len(text) else _cut_point(text, n_chars)
        ids = _encode(tokenizer, text[:cut])
        if cut >= len(text):
            return ids[:seq_len] if len(ids) >= seq_len else None
        if len(ids) >= seq_len + _MARGIN:
            return ids[:seq_len]
        n_chars *= 2


def random_window(tokenizer, text: str, seq_len: int, rng: random.Random) -> list[int] | None:
    """A window of ``seq_len`` tokens at a uniformly drawn start, or None if the text is shorter."""
    ids = _encode(tokenizer, text)  # the whole document: any start must be reachable
    if len(ids) < seq_len:
        return None
    start = rng.randrange(len(ids) - seq_len + 1)
    return ids[start : start + seq_len]


def _validate(tokenizer, n_samples, seq_len, seed, offset, min_chars, skip) -> None:
    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    check(is_int(n_samples) and n_samples >= 1, f"n_samples must be an integer >= 1, got {n_samples!r}")
    check(is_int(seq_len) and seq_len >= 1, f"seq_len must be an integer >= 1, got {seq_len!r}")
    check(is_int(seed), f"seed must be an integer, got {seed!r}")
    check(
        offset in OFFSETS, f"unknown offset {offset!r}: use 'start' (first window, the paper's) or 'random'"
    )
    check(is_int(min_chars) and min_chars >= 0, f"min_chars must be an integer >= 0, got {min_chars!r}")
    check(is_int(skip) and skip >= 0, f"skip must be an integer >= 0, got {skip!r}")
    check(
        callable(tokenizer) and hasattr(tokenizer, "decode"),
        f"tokenizer must be a Hugging Face tokenizer (e.g. model.tokenizer), got {type(tokenizer).__name__}",
    )


def load_texts(
    source: str | os.PathLike,
    tokenizer,
    n_samples: int,
    seq_len: int,
    seed: int = 0,
    offset: str = "start",
    min_chars: int = 0,
    skip: int = 0,
) -> list[TextSample]:
    """``n_samples`` texts of exactly ``seq_len`` tokens (no BOS) from ``source``, deterministically.

    Documents come in source order (files, hub) or in a ``seed``-shuffled order (builtin); each gives
    at most one sample: its first ``seq_len`` tokens (``offset="start"``) or a window at a start drawn
    from ``random.Random(f"{seed}:{doc_id}")`` (``offset="random"``). Documents with fewer than
    ``min_chars`` characters or ``seq_len`` tokens are skipped, counted and logged as a warning.
    ``"random-words"`` generates sample i from (tokenizer, seed, i); ``offset`` has no effect on it.
    ``text`` is ``tokenizer.decode(token_ids)``; re-tokenizing it may not give ``token_ids`` back, so
    cramming uses ``token_ids``. ``skip`` drops the first ``skip`` documents (or random-words indices), so
    ``skip=2, n_samples=3`` gives documents 2-4. Raises CramlensError on bad input or if too few samples can be made.
    """
    _validate(tokenizer, n_samples, seq_len, seed, offset, min_chars, skip)
    kind, ref = resolve_source(source)
    label = ref[0] if kind == "hub" else os.fspath(source)  # the hub repo id, else the source as given
    if kind == "random-words":
        check(min_chars == 0, "min_chars filters documents and 'random-words' has none: drop min_chars")
        samples = []
        for i in range(skip, skip + n_samples):
            ids = random_words_ids(tokenizer, seq_len, seed, i)
            samples.append(
                TextSample(f"random-words:{seed}:{i}", tokenizer.decode(ids), tuple(ids), RANDOM_WORDS)
            )
        return samples

    docs = iter_documents(source)
    if kind == "builtin":
        docs_list = list(docs)
        random.Random(seed).shuffle(docs_list)
        docs = iter(docs_list)
    docs = itertools.islice(docs, skip, None)

    samples: list[TextSample] = []
    short_chars: list[str] = []
    short_tokens: list[str] = []
    for doc_id, text in docs:
        if len(text) < min_chars:
            short_chars.append(doc_id)
            continue
        if offset == "start":
            ids = first_tokens(tokenizer, text, seq_len)
        else:
            ids = random_window(tokenizer, text, seq_len, random.Random(f"{seed}:{doc_id}"))
        if ids is None:
            short_tokens.append(doc_id)
            continue
        samples.append(TextSample(doc_id, tokenizer.decode(ids), tuple(ids), label))
        if len(samples) == n_samples:
            break

    skipped = short_chars + short_tokens
    if skipped:
        reasons = []
        if short_tokens:
            reasons.append(f"{len(short_tokens)} shorter than {seq_len} tokens")
        if short_chars:
            reasons.append(f"{len(short_chars)} shorter than min_chars={min_chars} characters")
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        plural = "" if len(skipped) == 1 else "s"
        logger.warning(
            "skipped %d document%s of %r (%s): %s", len(skipped), plural, label, "; ".join(reasons), shown
        )
    if len(samples) < n_samples:
        raise CramlensError(
            f"only {len(samples)} of the {n_samples} requested samples of {seq_len} tokens could be made from "
            f"{label!r} ({len(skipped)} documents too short): use a shorter --seq-len, fewer samples or another source"
        )
    return samples
