"""Text sources for cramming: documents in, fixed-length token windows out.

``load_texts(source, tokenizer, n_samples, seq_len)`` returns ``TextSample`` rows of exactly
``seq_len`` tokens each, tokenized with ``add_special_tokens=False`` (BOS is the model layout's
business, not this module's). Sources:

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

import json
import logging
import os
import random
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cramlens.errors import CramlensError, check
from cramlens.random_words import random_words_ids

logger = logging.getLogger(__name__)

BUILTIN = "builtin"
RANDOM_WORDS = "random-words"
OFFSETS = ("start", "random")
FILE_SUFFIXES = (".txt", ".jsonl")
# alias -> (hub repo id, split)
HUB_ALIASES = {
    "pg19": ("deepmind/pg19", "test"),
    "pg19_1k": ("LarryLovestein/pg19_1k", "train"),
}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "ON", "YES", "TRUE"}
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


def available_sources() -> dict[str, str]:
    """Named sources (name -> one-line description); any .txt/.jsonl file, folder or owner/name also works."""
    return {
        BUILTIN: "CPython's bundled documentation (pydoc_data.topics): real prose, offline, always present",
        RANDOM_WORDS: "random whole words from the tokenizer's vocabulary (Kuratov et al.'s control)",
        "pg19": "PG-19 test split, deepmind/pg19 on the Hugging Face hub (needs network)",
        "pg19_1k": "the paper's 1k PG-19 excerpts, LarryLovestein/pg19_1k train split (needs network)",
        "<path>": "a local .txt file (one document), .jsonl file (field 'text' per line) or folder of them",
        "<owner/name>": "any Hugging Face hub data set with a 'text' column (needs network)",
    }


# ---------------------------------------------------------------- sources -> documents


def iter_documents(source: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(doc_id, raw text)`` of a source in a deterministic order (builtin: sorted topics).

    Files are read lazily, so a bad line is reported when it is reached. ``"random-words"`` has no
    documents (it is generated from a tokenizer): use ``load_texts``.
    """
    kind, ref = _resolve(source)
    if kind == "builtin":
        return _builtin_documents()
    if kind == "random-words":
        raise CramlensError(
            "'random-words' has no documents: it is generated from a tokenizer, call load_texts('random-words', ...)"
        )
    if kind == "path":
        return _path_documents(ref)
    return _hub_documents(*ref)


def _resolve(source: str | os.PathLike) -> tuple[str, object]:
    """Classify a source: ("builtin"|"random-words", None), ("path", Path) or ("hub", (repo, split))."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    check(
        isinstance(source, str) and source.strip() != "",
        f"text source must be a name, path or owner/name string, got {source!r}: try 'builtin'",
    )
    if source in (BUILTIN, RANDOM_WORDS):
        return source, None
    if source in HUB_ALIASES:
        return "hub", HUB_ALIASES[source]
    path = Path(source).expanduser()
    if path.exists():
        return "path", path
    looks_like_path = (
        path.suffix.lower() in FILE_SUFFIXES + (".json",)
        or path.is_absolute()
        or source.startswith((".", "~"))
        or "\\" in source
        or source.count("/") > 1
    )
    if looks_like_path:
        raise CramlensError(f"text file or folder not found: {source}: check the path")
    if _HUB_NAME.match(source):
        return "hub", (source, "train")
    names = ", ".join(n for n in available_sources() if not n.startswith("<"))
    raise CramlensError(
        f"unknown text source {source!r}: it is no file or folder, and not one of {names} or an owner/name hub data set"
    )


def _builtin_documents() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"builtin:{name}", topics[name]


def _path_documents(path: Path) -> Iterator[tuple[str, str]]:
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        check(bool(files), f"folder {path} holds no .txt or .jsonl files: add some or pass a file")
        for f in files:
            yield from _file_documents(f, f.relative_to(path).as_posix())
    else:
        yield from _file_documents(path, path.name)


def _file_documents(path: Path, label: str) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    check(
        suffix in FILE_SUFFIXES,
        f"unsupported text file type {suffix or '(none)'!r}: {path}: use .txt (one document) or .jsonl (field 'text')",
    )
    if suffix == ".txt":
        text = _read(path)
        check(text.strip() != "", f"text file is empty: {path}: give it some text or choose another source")
        yield label, text
        return
    n_rows = 0
    with open(path, encoding="utf-8") as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                yield f"{label}:{n_rows}", _jsonl_text(line, path, lineno)
                n_rows += 1
        except UnicodeDecodeError as e:
            raise CramlensError(f"{path} is not UTF-8 text ({e.reason}): re-encode it as UTF-8") from None
    check(n_rows > 0, f"jsonl file is empty: {path}: it needs one JSON object with a 'text' field per line")


def _jsonl_text(line: str, path: Path, lineno: int) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise CramlensError(
            f"{path} line {lineno} is not valid JSON ({e.msg}): each line must be one JSON object with a 'text' field"
        ) from None
    check(
        isinstance(row, dict) and "text" in row,
        f"{path} line {lineno} has no 'text' field: each line must be a JSON object with a 'text' field",
    )
    text = row["text"]
    check(isinstance(text, str), f"{path} line {lineno}: field 'text' is {type(text).__name__}, not a string")
    return text


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CramlensError(f"{path} is not UTF-8 text ({e.reason}): re-encode it as UTF-8") from None


# ---------------------------------------------------------------- hub data sets


def _offline_env() -> bool:
    flags = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(f, "").upper() in _TRUE for f in flags)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub, so that no network fails in seconds rather than after retries."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may be the only way out: let datasets try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _needs_network(repo: str, why: str) -> CramlensError:
    return CramlensError(
        f"hub data set {repo!r} needs network ({why}): use a local .txt/.jsonl file or folder, or source 'builtin'"
    )


def _hub_documents(repo: str, split: str) -> Iterator[tuple[str, str]]:
    # Streaming reads remote files, so a local cache cannot serve it: offline is a clear error, early.
    if _offline_env():
        raise _needs_network(repo, "offline mode is set by HF_DATASETS_OFFLINE/HF_HUB_OFFLINE")
    if not _hub_reachable():
        raise _needs_network(repo, "the Hugging Face hub is unreachable")
    return _stream_hub(repo, split)


def _stream_hub(repo: str, split: str) -> Iterator[tuple[str, str]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise CramlensError(
            f"hub data set {repo!r} needs the 'datasets' package: pip install datasets"
        ) from None
    try:
        rows = iter(datasets.load_dataset(repo, split=split, streaming=True))
        index = 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            check("text" in row, f"hub data set {repo!r} has no 'text' column (columns: {', '.join(row)})")
            yield f"{repo}:{index}", row["text"] or ""
            index += 1
    except CramlensError:
        raise
    except (ConnectionError, TimeoutError) as e:
        raise _needs_network(repo, type(e).__name__) from None
    except Exception as e:  # datasets raises many types (DatasetNotFoundError, RuntimeError for scripts, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CramlensError(
            f"could not load hub data set {repo!r} split {split!r}: {first}: check the name, or use a local file or 'builtin'"
        ) from None


# ---------------------------------------------------------------- documents -> samples


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _cut_point(text: str, n_chars: int) -> int:
    """A cut at or after n_chars that ends on a whole word (next char is whitespace), else n_chars."""
    m = re.compile(r"(?<=\S)\s").search(text, n_chars, n_chars + 2000)
    return m.start() if m else n_chars


def first_tokens(tokenizer, text: str, seq_len: int) -> list[int] | None:
    """``tokenize(text)[:seq_len]``, or None if the text has fewer tokens, tokenizing only a prefix.

    A character prefix of ~8 chars/token is tokenized, cut where a word ends and required to give
    ``seq_len + 16`` tokens, so its cut tail cannot reach the window; it doubles until it does.
    """
    n_chars = max(8 * seq_len, 256)
    while True:
        if n_chars >= len(text):
            ids = _encode(tokenizer, text)
            return ids[:seq_len] if len(ids) >= seq_len else None
        cut = _cut_point(text, n_chars)
        ids = _encode(tokenizer, text[:cut])
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


def _validate(tokenizer, n_samples, seq_len, seed, offset, min_chars) -> None:
    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    check(is_int(n_samples) and n_samples >= 1, f"n_samples must be an integer >= 1, got {n_samples!r}")
    check(is_int(seq_len) and seq_len >= 1, f"seq_len must be an integer >= 1, got {seq_len!r}")
    check(is_int(seed), f"seed must be an integer, got {seed!r}")
    check(
        offset in OFFSETS, f"unknown offset {offset!r}: use 'start' (first window, the paper's) or 'random'"
    )
    check(is_int(min_chars) and min_chars >= 0, f"min_chars must be an integer >= 0, got {min_chars!r}")
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
) -> list[TextSample]:
    """``n_samples`` texts of exactly ``seq_len`` tokens (no BOS) from ``source``, deterministically.

    Documents come in source order (files, hub) or in a ``seed``-shuffled order (builtin); each gives
    at most one sample: its first ``seq_len`` tokens (``offset="start"``) or a window at a start drawn
    from ``random.Random(f"{seed}:{doc_id}")`` (``offset="random"``). Documents with fewer than
    ``min_chars`` characters or ``seq_len`` tokens are skipped, counted and logged as a warning.
    ``"random-words"`` generates sample i from (tokenizer, seed, i); ``offset`` has no effect on it.
    ``text`` is ``tokenizer.decode(token_ids)``; re-tokenizing it may not give ``token_ids`` back, so
    cramming uses ``token_ids``. Raises CramlensError on bad input or if too few samples can be made.
    """
    _validate(tokenizer, n_samples, seq_len, seed, offset, min_chars)
    kind, ref = _resolve(source)
    label = ref[0] if kind == "hub" else os.fspath(source)  # the hub repo id, else the source as given
    if kind == "random-words":
        check(min_chars == 0, "min_chars filters documents and 'random-words' has none: drop min_chars")
        samples = []
        for i in range(n_samples):
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
        logger.warning("skipped %d documents of %r (%s): %s", len(skipped), label, "; ".join(reasons), shown)
    if len(samples) < n_samples:
        raise CramlensError(
            f"only {len(samples)} of the {n_samples} requested samples of {seq_len} tokens could be made from "
            f"{label!r} ({len(skipped)} documents too short): use a shorter --seq-len, fewer samples or another source"
        )
    return samples
