"""load_texts windows: the builtin source, prefix tokenization, the random-words source, argument checks.

File, folder and hub sources, skip-and-report and bad-input errors are in test_texts_sources.py; the ``tok`` and
``pg19_rows`` fixtures and ``assert_well_formed`` are in conftest.py.
"""

from __future__ import annotations

import pytest
from conftest import assert_well_formed

from cramlens import texts
from cramlens.errors import CramlensError
from cramlens.random_words import word_token_ids
from cramlens.texts import iter_documents, load_texts


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- builtin


def test_builtin_exact_lengths_and_no_bos(tok):
    samples = load_texts("builtin", tok, n_samples=5, seq_len=40)
    assert len(samples) == 5
    assert_well_formed(samples, tok, 40)
    from pydoc_data.topics import topics

    for s in samples:
        assert s.source == "builtin" and s.sample_id.startswith("builtin:")
        full = topics[s.sample_id.removeprefix("builtin:")]
        assert list(s.token_ids) == encode(tok, full)[:40]  # first window, no special tokens added
    assert len({s.sample_id for s in samples}) == 5


def test_builtin_seed_shuffles_deterministically(tok):
    a = load_texts("builtin", tok, 6, 32, seed=0)
    b = load_texts("builtin", tok, 6, 32, seed=0)
    c = load_texts("builtin", tok, 6, 32, seed=1)
    assert a == b
    assert [s.sample_id for s in a] != [s.sample_id for s in c]
    # iter_documents itself is unshuffled: sorted topic names
    ids = [doc_id for doc_id, _ in iter_documents("builtin")]
    assert ids == sorted(ids) and len(ids) > 50


def test_random_offset_is_seeded_window_of_full_tokenization(tok):
    a = load_texts("builtin", tok, 4, 24, seed=3, offset="random")
    b = load_texts("builtin", tok, 4, 24, seed=3, offset="random")
    assert a == b
    assert_well_formed(a, tok, 24)
    from pydoc_data.topics import topics

    starts = []
    for s in a:
        full = encode(tok, topics[s.sample_id.removeprefix("builtin:")])
        hits = [i for i in range(len(full) - 23) if tuple(full[i : i + 24]) == s.token_ids]
        assert hits, "a random window must be a contiguous slice of the document's tokens"
        starts.append(hits[0])
    assert any(st > 0 for st in starts)


# ---------------------------------------------------------------- prefix tokenization


@pytest.mark.parametrize("seq_len", [1, 64, 700])
def test_prefix_tokenization_matches_full_tokenization(tok, pg19_rows, seq_len):
    from pydoc_data.topics import topics

    for text in pg19_rows[:20] + [topics[k] for k in sorted(topics)]:
        full = encode(tok, text)
        got = texts.first_tokens(tok, text, seq_len)
        assert got == (full[:seq_len] if len(full) >= seq_len else None)


def test_prefix_cut_never_changes_earlier_tokens(tok, pg19_rows):
    from pydoc_data.topics import topics

    for text in [pg19_rows[0], topics["exceptions"], "x" * 900 + " tail words " + "y" * 900]:
        full = encode(tok, text)
        for n_chars in range(1, min(len(text), 3000), 11):
            cut = texts._cut_point(text, n_chars)
            assert cut == len(text) or (not text[cut - 1].isspace() and text[cut].isspace())
            prefix = encode(tok, text[:cut])
            assert prefix == full[: len(prefix)], f"cut at {cut} changed the tokens"


def test_long_documents_are_not_fully_tokenized(tok):
    long_doc = " ".join(f"alpha{i} beta gamma." for i in range(4000))  # ~80k characters
    lengths = []

    class Spy:
        def __call__(self, text, **kw):
            lengths.append(len(text))
            return tok(text, **kw)

        def decode(self, ids):
            return tok.decode(ids)

    ids = texts.first_tokens(Spy(), long_doc, 32)
    assert ids == encode(tok, long_doc)[:32]
    assert max(lengths) < 2000 < len(long_doc)


# ---------------------------------------------------------------- random words


def test_random_words_only_word_tokens_and_deterministic(tok):
    a = load_texts("random-words", tok, 3, 50, seed=0)
    assert_well_formed(a, tok, 50)
    words = set(word_token_ids(tok))
    for s in a:
        assert s.source == "random-words"
        for t in s.token_ids:
            piece = tok.decode([t])
            assert t in words
            assert piece[0] == " " and piece[1:].isalpha() and piece[1:].isascii() and len(piece) >= 3
        assert s.text.split() == [tok.decode([t]).strip() for t in s.token_ids]
    assert len({s.token_ids for s in a}) == 3  # samples differ from one another
    # sample i depends only on (tokenizer, seed, i)
    assert load_texts("random-words", tok, 5, 50, seed=0)[:3] == a
    b = load_texts("random-words", tok, 3, 50, seed=1)
    assert all(x.token_ids != y.token_ids for x, y in zip(a, b, strict=True))
    assert [s.sample_id for s in a] == ["random-words:0:0", "random-words:0:1", "random-words:0:2"]


def test_skip_starts_random_words_at_that_index_and_rejects_negatives(tok):
    assert load_texts("random-words", tok, 2, 20, skip=1) == load_texts("random-words", tok, 3, 20)[1:]
    with pytest.raises(CramlensError, match="skip must be an integer >= 0"):
        load_texts("random-words", tok, 2, 20, skip=-1)


def test_word_vocabulary_is_filtered(tok):
    words = set(word_token_ids(tok))
    assert 10_000 < len(words) < len(tok)
    for piece in [" the", " house", " river"]:
        assert encode(tok, piece)[0] in words
    for piece in ["the", " 123", " .", " a"]:  # no leading space, digits, punctuation, single letter
        ids = encode(tok, piece)
        assert len(ids) != 1 or ids[0] not in words


class FakeTokenizer:
    """Greedy longest-match tokenizer over a tiny vocabulary; adds BOS (id 0) when asked to.

    ``" zzbad"`` decodes as a word but can never be produced by tokenization (" zz" + "bad").
    """

    all_special_ids = [0]

    def __init__(self, n_words=120):
        letters = "abcdefghijklmnopqrstuvwxy"
        words = [" " + a + b for a in letters for b in letters][:n_words]
        chars = [chr(c) for c in range(32, 127)]
        self.vocab = ["<s>", *words, " zz", "bad", " zzbad", *chars, "\n"]
        self.hidden = {self.vocab.index(" zzbad")}
        self.index = {t: i for i, t in enumerate(self.vocab)}

    def __len__(self):
        return len(self.vocab)

    def _encode(self, text):
        ids, i = [], 0
        while i < len(text):
            for j in range(min(len(text), i + 6), i, -1):
                t = self.index.get(text[i:j])
                if t is not None and t not in self.hidden and t != 0:
                    ids.append(t)
                    i = j
                    break
            else:
                raise ValueError(f"cannot tokenize {text[i]!r}")
        return ids

    def __call__(self, text, add_special_tokens=True, verbose=True):
        bos = [0] if add_special_tokens else []
        if isinstance(text, list):
            return {"input_ids": [bos + self._encode(t) for t in text]}
        return {"input_ids": bos + self._encode(text)}

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)

    def batch_decode(self, seqs):
        return [self.decode(s) for s in seqs]

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]


def test_random_words_excludes_tokens_that_do_not_round_trip():
    fake = FakeTokenizer()
    words = set(word_token_ids(fake))
    assert fake.index[" ab"] in words and fake.index[" zz"] in words
    assert fake.index[" zzbad"] not in words and 0 not in words and fake.index["bad"] not in words
    samples = load_texts("random-words", fake, 3, 200, seed=0)
    assert_well_formed(samples, fake, 200)
    assert all(t in words for s in samples for t in s.token_ids)


def test_random_words_needs_word_tokens():
    with pytest.raises(CramlensError, match=r"only 21 whole-word tokens.*another text source"):
        load_texts("random-words", FakeTokenizer(n_words=19), 1, 8)


def test_no_special_tokens_are_added(tmp_path):
    fake = FakeTokenizer()
    path = tmp_path / "t.txt"
    path.write_text("Plain ASCII text, long enough for a window of tokens.", encoding="utf-8")
    (sample,) = load_texts(path, fake, 1, 10)
    assert sample.token_ids[0] != 0
    assert list(sample.token_ids) == fake(path.read_text(), add_special_tokens=False)["input_ids"][:10]


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"offset": "middle"}, r"unknown offset 'middle'.*'start'.*'random'"),
        ({"n_samples": 0}, r"n_samples must be an integer >= 1, got 0"),
        ({"seq_len": 0}, r"seq_len must be an integer >= 1, got 0"),
        ({"seq_len": 2.5}, r"seq_len must be an integer"),
        ({"min_chars": -1}, r"min_chars must be an integer >= 0"),
        ({"source": "nonsense"}, r"unknown text source 'nonsense'.*builtin.*owner/name"),
        ({"source": ""}, r"text source must be"),
        ({"tokenizer": "gpt2"}, r"tokenizer must be a Hugging Face tokenizer"),
        ({"source": "random-words", "min_chars": 10}, r"random-words.*drop min_chars"),
    ],
)
def test_bad_arguments(tok, kwargs, pattern):
    args = {"source": "builtin", "tokenizer": tok, "n_samples": 2, "seq_len": 8} | kwargs
    with pytest.raises(CramlensError, match=pattern):
        load_texts(**args)
