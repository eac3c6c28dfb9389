"""Document sources of load_texts: .txt/.jsonl files and folders, skip-and-report, hub data sets (offline here),
bad-input errors that name the file and line, source resolution and the list of sources.

Builtin windows, prefix tokenization and random words are in test_texts.py; the ``tok`` and ``pg19_rows``
fixtures, ``PG19_FILE`` and ``assert_well_formed`` are in conftest.py.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pytest
from conftest import PG19_FILE, assert_well_formed

from cramlens import documents
from cramlens.errors import CramlensError
from cramlens.texts import available_sources, iter_documents, load_texts


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def long_text(i: int, n_words: int = 120) -> str:
    return f"Document number {i} begins here. " + " ".join(f"word{i}x{j}" for j in range(n_words))


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


# ---------------------------------------------------------------- source names


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
