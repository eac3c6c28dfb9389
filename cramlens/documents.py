"""Text sources -> documents: ``(doc_id, raw text)`` in a deterministic order.

A source is a name (``"builtin"``, ``"pg19"``, ``"pg19_1k"``), a local ``.txt``/``.jsonl`` file or a
folder of them, or a Hugging Face hub ``"owner/name"`` (streamed through ``datasets``).
``"random-words"`` is also a source name, but it has no documents: ``cramlens.texts`` generates it.
Everything here raises CramlensError with a one-line message on bad input.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from cramlens.errors import CramlensError, check

BUILTIN = "builtin"
RANDOM_WORDS = "random-words"
FILE_SUFFIXES = (".txt", ".jsonl")
# alias -> (hub repo id, split)
HUB_ALIASES = {
    "pg19": ("deepmind/pg19", "test"),
    "pg19_1k": ("LarryLovestein/pg19_1k", "train"),
}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "ON", "YES", "TRUE"}


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
    kind, ref = resolve_source(source)
    if kind == "builtin":
        return _builtin_documents()
    if kind == "random-words":
        raise CramlensError(
            "'random-words' has no documents: it is generated from a tokenizer, call load_texts('random-words', ...)"
        )
    if kind == "path":
        return _path_documents(ref)
    return _hub_documents(*ref)


def resolve_source(source: str | os.PathLike) -> tuple[str, object]:
    """Classify a source: ("builtin"|"random-words", None), ("path", Path) or ("hub", (repo, split))."""
    if isinstance(source, os.PathLike):  # a Path is always a path, never a name
        path = Path(source).expanduser()
        check(path.exists(), f"text file or folder not found: {os.fspath(source)}: check the path")
        return "path", path
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
    """CPython's documentation topics, sorted by name. They follow the running Python's version."""
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
