"""Task data loaders: HellaSwag, ARC-Easy and MMLU as one normalised multiple-choice item type.

Sources, for every loader: a local ``.jsonl`` file (the copies in ``../shared/data``, which are the default when
present), or the Hugging Face hub through ``datasets`` (``Rowan/hellaswag``, ``allenai/ai2_arc`` ARC-Easy,
``cais/mmlu``) for users who are online; offline, the hub path fails with one line saying so.

Both the original jsonl layouts and the hub layouts are read:

- HellaSwag: ``ctx``, ``endings`` (4), ``label`` (int or the hub's string).
- ARC: ``question`` (a string, or the original ``{"stem", "choices"}`` object), ``choices`` (a list of
  ``{label, text}`` or the hub's ``{"label": [...], "text": [...]}``), ``answerKey``. Labels are mixed ("A"-"E",
  "1"-"5"; 3 to 5 choices); the answer index is found through the item's own labels.
- MMLU: ``subject``, ``question``, ``choices`` (4), ``answer`` (int 0-3 or a letter).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cramlens.errors import CramlensError, check

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOCAL = {
    "hellaswag": SHARED / "hellaswag" / "hellaswag_val_1000.jsonl",
    "arc_easy": SHARED / "arc_easy" / "arc_easy_test_1000.jsonl",
    "mmlu": SHARED / "mmlu" / "mmlu_test_stratified_1140.jsonl",
    "mmlu_dev": SHARED / "mmlu" / "mmlu_dev_5shot.jsonl",
}
HUB = {
    "hellaswag": ("Rowan/hellaswag", None, "validation"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "validation"),
    "mmlu": ("cais/mmlu", "all", "test"),
    "mmlu_dev": ("cais/mmlu", "all", "dev"),
}
TASKS = ("hellaswag", "arc_easy", "mmlu")


@dataclass(frozen=True)
class Item:
    """One multiple-choice item: a context (HellaSwag ``ctx`` / the question), its choices and the answer index."""

    id: str
    context: str
    choices: tuple[str, ...]
    label: int
    task: str
    subject: str = ""
    extra: dict = field(default_factory=dict, compare=False, repr=False)


def _rows(task: str, source: str | Path | None) -> Iterator[dict]:
    """Raw rows from a local jsonl (default: the shared copy when present) or the hub (``"hub"`` or a hub id)."""
    if source is None:
        source = LOCAL[task] if LOCAL[task].exists() else "hub"
    path = Path(source)
    is_hub = str(source) == "hub" or (not path.exists() and path.suffix not in (".jsonl", ".json"))
    if not is_hub:
        check(path.exists(), f"{path} does not exist; pass a jsonl file of {task} items")
        with open(path) as f:
            for n, line in enumerate(f):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise CramlensError(f"{path}:{n + 1} is not valid JSON ({e.msg})") from e
        return
    hub, config, split = HUB[task]
    if str(source) not in ("hub", hub):
        hub, config = str(source), None
    try:
        import datasets

        ds = datasets.load_dataset(hub, config, split=split)
    except Exception as e:  # offline, unknown name, missing config
        raise CramlensError(
            f"could not load {hub!r} ({split}) from the Hugging Face hub (needs network: {type(e).__name__}); "
            f"pass a local jsonl instead (e.g. {LOCAL[task]})"
        ) from e
    yield from ds


def _hellaswag(r: dict, n: int) -> Item:
    endings = tuple(r["endings"])
    check(len(endings) >= 2, f"hellaswag row {n}: needs at least two endings")
    return Item(
        str(r.get("ind", n)), r["ctx"], endings, int(r["label"]), "hellaswag", r.get("activity_label", "")
    )


def arc_answer_index(labels: Iterable[str], key: str) -> int:
    """Index of ``answerKey`` among the item's own choice labels ("A"-"E" or "1"-"5")."""
    labels = [str(x).strip() for x in labels]
    key = str(key).strip()
    if key in labels:
        return labels.index(key)
    alt = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}
    inv = {v: k for k, v in alt.items()}
    other = alt.get(key) or inv.get(key)
    check(other in labels, f"ARC answerKey {key!r} is not one of the choice labels {labels}")
    return labels.index(other)


def _arc(r: dict, n: int) -> Item:
    q = r["question"]
    choices = r.get("choices")
    if isinstance(q, dict):  # the original ARC layout: question = {stem, choices}
        choices = q.get("choices", choices)
        q = q["stem"]
    if isinstance(choices, dict):  # hub layout: {"label": [...], "text": [...]}
        labels, texts = list(choices["label"]), list(choices["text"])
    else:
        labels, texts = [c["label"] for c in choices], [c["text"] for c in choices]
    check(len(texts) >= 2, f"ARC row {n}: needs at least two choices")
    label = arc_answer_index(labels, r["answerKey"])
    return Item(str(r.get("id", n)), q, tuple(texts), label, "arc_easy", extra={"labels": labels})


def _mmlu(r: dict, n: int) -> Item:
    ans = r["answer"]
    if isinstance(ans, str) and not ans.isdigit():
        ans = "ABCD".index(ans.strip().upper())
    return Item(
        f"{r.get('subject', '')}:{r.get('row', n)}",
        r["question"],
        tuple(r["choices"]),
        int(ans),
        "mmlu",
        r.get("subject", ""),
    )


_PARSERS = {"hellaswag": _hellaswag, "arc_easy": _arc, "mmlu": _mmlu, "mmlu_dev": _mmlu}


def load_items(
    task: str,
    source: str | Path | None = None,
    limit: int | None = None,
    subjects: Iterable[str] | None = None,
) -> list[Item]:
    """Items of ``task`` (hellaswag, arc_easy, mmlu, mmlu_dev) from ``source`` (jsonl path, ``"hub"``, default local)."""
    check(task in _PARSERS, f"unknown task {task!r}; choose one of {', '.join(_PARSERS)}")
    keep = set(subjects) if subjects is not None else None
    out: list[Item] = []
    for n, r in enumerate(_rows(task, source)):
        try:
            item = _PARSERS[task](dict(r), n)
        except (KeyError, TypeError, ValueError) as e:
            raise CramlensError(f"{task} row {n} has an unexpected layout ({type(e).__name__}: {e})") from e
        if keep is not None and item.subject not in keep:
            continue
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    check(len(out) > 0, f"no {task} items found" + (f" for subjects {sorted(keep)}" if keep else ""))
    return out


def few_shot_pool(source: str | Path | None = None) -> dict[str, list[Item]]:
    """MMLU dev items per subject, in file order (the 5-shot exemplars)."""
    pool: dict[str, list[Item]] = {}
    for it in load_items("mmlu_dev", source):
        pool.setdefault(it.subject, []).append(it)
    return pool


def select_by_length(items: list[Item], count_tokens, max_tokens: int, n: int | None = None) -> list[Item]:
    """The selection rule of the CPU protocol: items (in file order) whose context has at most ``max_tokens`` tokens."""
    out = [it for it in items if 0 < count_tokens(it.context) <= max_tokens]
    return out[:n] if n is not None else out
