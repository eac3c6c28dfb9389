"""Random-word texts: Kuratov et al.'s control for cramming (text with no structure to exploit).

Kuratov et al. drew random words from a GloVe vocabulary. With no GloVe file here, the words come
from the tokenizer itself: every token that decodes to a leading space followed by a purely
alphabetic ASCII word of at least two letters (SmolLM2's ``"Ġthe"``-style tokens). Words are drawn
with a seeded ``random.Random``, joined as text (each keeps its leading space), tokenized and cut to
``seq_len`` tokens, so every token of a sample is one of those word tokens. A sample depends only on
(tokenizer vocabulary, seed, sample index): sample 7 is the same whether 8 or 800 are asked for.
"""

from __future__ import annotations

import random
import weakref

from cramlens.errors import CramlensError

_SPACE_MARKERS = ("Ġ", "▁")  # byte-level BPE (GPT-2, Llama 3, SmolLM) and SentencePiece (Llama 2, Gemma)
_word_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_word(piece: str) -> bool:
    return len(piece) >= 2 and piece.isascii() and piece.isalpha()


def word_token_ids(tokenizer) -> tuple[int, ...]:
    """Ids (ascending) of the tokens random-words draws from; see ``word_table``."""
    return tuple(i for i, _ in word_table(tokenizer))


def word_table(tokenizer) -> tuple[tuple[int, str], ...]:
    """``(token id, word)`` pairs, ids ascending, of the tokens that decode to ``" " + word``, word purely alphabetic ASCII, ≥ 2 letters.

    Special tokens are excluded, and so are tokens that do not come back as themselves when their
    text is tokenized alone (so a text of drawn words tokenizes into those very tokens).
    SentencePiece decoders often drop the leading space of a lone token, so a token whose raw form
    starts with a word-boundary marker (``▁``) counts as well.
    Cached per tokenizer object (the vocabulary scan decodes every token once, ~0.3 s for 49k).
    """
    try:
        return _word_cache[tokenizer]
    except (KeyError, TypeError):
        pass
    n_vocab = len(tokenizer)
    decoded = tokenizer.batch_decode([[i] for i in range(n_vocab)])
    raw = tokenizer.convert_ids_to_tokens(list(range(n_vocab)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    candidates: list[tuple[int, str]] = []  # (token id, word)
    for i, (text, piece) in enumerate(zip(decoded, raw, strict=True)):
        if i in special or not isinstance(piece, str):
            continue
        if text.startswith(" ") and _is_word(text[1:]):
            candidates.append((i, text[1:]))
        elif piece[:1] in _SPACE_MARKERS and _is_word(piece[1:]) and text.strip() == piece[1:]:
            candidates.append((i, piece[1:]))
    # Keep the words that tokenize back to their own token, so that a text of drawn words is made of
    # exactly those tokens (" Fract" might otherwise come back as " Fr" + "act").
    texts = [" " + w for _, w in candidates]
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
    stable = [(i, w) for (i, w), enc in zip(candidates, encoded, strict=True) if list(enc) == [i]]
    # SentencePiece dummy prefixes can defeat that check: then keep every candidate.
    result = tuple(stable if len(stable) >= 100 else candidates)
    if len(result) < 100:
        raise CramlensError(
            f"the tokenizer has only {len(result)} whole-word tokens (leading space + letters), too few for "
            "random-words texts: use another text source"
        )
    try:
        _word_cache[tokenizer] = result
    except TypeError:
        pass
    return result


def random_words_ids(tokenizer, seq_len: int, seed: int, index: int) -> list[int]:
    """Exactly ``seq_len`` token ids of random whole words for sample ``index`` under ``seed``.

    Deterministic: the generator is ``random.Random(f"random-words:{seed}:{index}")`` (string seeds
    are hashed with SHA-512, independent of PYTHONHASHSEED).
    """
    words = [w for _, w in word_table(tokenizer)]
    rng = random.Random(f"random-words:{seed}:{index}")
    drawn: list[str] = []
    ids: list[int] = []
    n_draw = (
        seq_len + 8
    )  # a word token almost always re-tokenizes to itself: one token per word (checked above)
    while len(ids) < seq_len:
        drawn.extend(" " + rng.choice(words) for _ in range(n_draw))
        ids = tokenizer("".join(drawn), add_special_tokens=False, verbose=False)["input_ids"]
        n_draw = max(8, seq_len - len(ids) + 8)
    return list(ids[:seq_len])
