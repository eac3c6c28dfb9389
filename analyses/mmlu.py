"""Generative 5-shot MMLU with crammed embeddings (REFERENCE C.5): prompt, answer parser, greedy decode, modes.

Modes (the paper's names; the reference code's in brackets), in all of which the full plain-text prompt follows
the embedding: ``baseline`` (no embedding), ``few_shot`` [prefix_only] (the 5-shot block crammed once per subject),
``full_prefix`` [full_prompt] (the whole prompt crammed per item, warm-started from the subject's few-shot
embedding), ``random`` (a random vector N(0, 1)·std(W_E), the paper's control).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, TransformerLensKeyValueCache

import cramlens as cl
from cramlens.errors import check
from cramlens.hooks import inject
from cramlens.layout import placeholder_id
from cramlens.runs import atomic_save_tensors
from cramlens.stats import mean_ci
from cramlens.texts import TextSample

from .scoring import mcnemar, with_interval
from .tasks import Item

LETTERS = "ABCD"
MODES = ("baseline", "few_shot", "full_prefix", "random")


# ------------------------------------------------------------------------------------------- prompt
def subject_title(subject: str) -> str:
    """``high_school_us_history`` → ``High School Us History`` (the reference's ``str.title()``)."""
    return subject.replace("_", " ").title()


def few_shot_prefix(subject: str, shots: Sequence[Item]) -> str:
    """The header and the 5 solved exemplars, exactly as the reference builds them (lines joined by ``\\n``)."""
    lines = [f"The following are multiple choice questions about {subject_title(subject)}.\n"]
    for ex in shots:
        lines.append(f"Question: {ex.context}")
        lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(ex.choices)]
        lines.append(f"Answer: {LETTERS[ex.label]}\n")
    return "\n".join(lines)


def question_suffix(item: Item) -> str:
    """``Question: …\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer:``."""
    lines = [f"Question: {item.context}"] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices)]
    return "\n".join(lines + ["Answer:"])


def full_prompt(subject: str, item: Item, shots: Sequence[Item]) -> str:
    """Prefix + suffix, concatenated with nothing between (the reference's ``prefix + suffix``)."""
    return few_shot_prefix(subject, shots) + question_suffix(item)


# ------------------------------------------------------------------------------------------- answers
_LEAD = re.compile(
    r"^\s*(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)?\s*(?:is)?\s*[:\-]?\s*", re.IGNORECASE
)


def parse_answer(text: str, rule: str = "strict") -> str | None:
    """The answer letter in generated text, or ``None`` (not valid).

    ``strict`` (ours): after an optional lead-in ("Answer:", "The answer is"), a lone letter A-D (any case) followed
    by the end, whitespace or punctuation: ``"A"``, ``" b)"``, ``"Answer: C"``. ``reference``: the first character of
    the stripped text that is one of a-d/A-D anywhere (the paper's rule; it reads ``"Answer: C"`` as A and most
    English words as some letter).
    """
    if rule == "reference":
        return next((ch.upper() for ch in text.strip() if ch.upper() in LETTERS), None)
    m = re.match(r"\(?([A-Da-d])(?:$|[\s).:,;\]])", _LEAD.sub("", text, count=1))
    return m.group(1).upper() if m else None


# ------------------------------------------------------------------------------------------- decoding
@torch.no_grad()
def greedy_generate(
    model: HookedTransformer, ids: Sequence[int], memory: torch.Tensor | None = None, n_new: int = 5
) -> list[int]:
    """Greedy ``n_new`` tokens after ``[mem?] + ids`` (KV cache; the memory is injected on the first pass only)."""
    n_mem = 0 if memory is None else memory.shape[-2]
    dev = model.cfg.device
    toks = torch.tensor([[placeholder_id(model)] * n_mem + list(ids)], device=dev)
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, dev, 1)
    hooks = [] if memory is None else list(inject(memory.reshape(1, n_mem, -1).to(dev)))
    out: list[int] = []
    eos = model.tokenizer.eos_token_id if model.tokenizer is not None else None
    for _ in range(n_new):
        with model.hooks(fwd_hooks=hooks):
            logits = model(toks, past_kv_cache=cache, attention_mask=torch.ones_like(toks))
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        if nxt == eos:
            break
        toks, hooks = torch.tensor([[nxt]], device=dev), []
    return out


def random_memory(
    model: HookedTransformer, n_mem: int = 1, seed: int = 0, scale: str = "std"
) -> torch.Tensor:
    """A random memory ``[m, d]`` in ``hook_embed``'s space: ``scale="std"`` (the paper's) draws N(0, 1) times the
    standard deviation of the embedding matrix; ``"mean_norm"`` a random direction with the mean token norm."""
    W = model.W_E.detach().float()
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n_mem, W.shape[1], generator=g)
    if scale == "std":
        return v * W.std()
    check(scale == "mean_norm", f"random memory scale {scale!r}: use 'std' (the paper's) or 'mean_norm'")
    return v / v.norm(dim=-1, keepdim=True) * W.norm(dim=-1).mean()


# ------------------------------------------------------------------------------------------- cramming
def cram_text(
    model: HookedTransformer,
    text: str,
    out: Path,
    text_id: str,
    steps: int,
    init: str | None = None,
    layout: cl.Layout | None = None,
) -> cl.CrammedSample:
    """Full-cram one prompt (``downstream`` recipe, ``steps`` budget), resumable in ``out``."""
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist()
    text_sample = TextSample(text_id, text, tuple(ids), "mmlu")
    run = cl.cram(
        model,
        [text_sample],
        recipe="downstream",
        max_steps=steps,
        init=init,
        layout=layout,
        out=out,
        resume=True,
        check_greedy=False,
    )
    return run.samples[0]


def subject_memory(
    model: HookedTransformer, subject: str, shots: Sequence[Item], root: Path, steps: int, layout=None
) -> Path:
    """Cram the subject's 5-shot block once; its embedding is saved to ``root/<subject>/few_shot.safetensors``."""
    path = root / subject / "few_shot.safetensors"
    if not path.exists():
        prefix = few_shot_prefix(subject, shots)
        s = cram_text(
            model, prefix, root / subject / "few_shot", f"mmlu:{subject}:prefix", steps, layout=layout
        )
        atomic_save_tensors(path, {"embedding": s.embedding}, {"accuracy": str(s.accuracy_final)})
    return path


def tokens(model: HookedTransformer, text: str) -> list[int]:
    """``[BOS?] + tokens(text)`` (the model's BOS rule: re-added after the memory, as in the reference)."""
    return model.to_tokens(text)[0].tolist()


def item_memory(
    model: HookedTransformer,
    mode: str,
    item: Item,
    shots: Sequence[Item],
    root: Path,
    steps: int,
    seed: int = 0,
    layout: cl.Layout | None = None,
    full_steps: int | None = None,
) -> tuple[torch.Tensor | None, float]:
    """The memory of ``item`` under ``mode`` and its teacher-forced accuracy on what it crammed (nan if none)."""
    if mode == "baseline":
        return None, float("nan")
    if mode == "random":
        return random_memory(model, seed=seed), float("nan")
    prefix = subject_memory(model, item.subject, shots, root, steps, layout)
    if mode == "few_shot":
        from safetensors import safe_open

        with safe_open(str(prefix), "pt") as f:
            return f.get_tensor("embedding"), float(f.metadata()["accuracy"])
    safe_id = re.sub(r"[^\w.-]", "_", item.id)
    s = cram_text(
        model,
        full_prompt(item.subject, item, shots),
        root / item.subject / f"full_{safe_id}",
        f"mmlu:{item.id}:full",
        full_steps or steps,
        init=f"file:{prefix}",
        layout=layout,
    )
    return s.embedding, s.accuracy_final


def evaluate_item(
    model: HookedTransformer,
    mode: str,
    item: Item,
    shots: Sequence[Item],
    root: str | os.PathLike,
    steps: int,
    n_new: int = 5,
    seed: int = 0,
    layout: cl.Layout | None = None,
    full_steps: int | None = None,
) -> dict:
    """One MMLU item under one mode → a result row (generated text, parsed letters, correctness)."""
    mem, conv = item_memory(model, mode, item, shots, Path(root), steps, seed, layout, full_steps)
    gen = greedy_generate(model, tokens(model, full_prompt(item.subject, item, shots)), mem, n_new)
    text = model.tokenizer.decode(gen, skip_special_tokens=True)
    strict, ref = parse_answer(text), parse_answer(text, "reference")
    gold = LETTERS[item.label]
    return {
        "id": item.id,
        "mode": mode,
        "subject": item.subject,
        "generated": text,
        "answer": gold,
        "pred": strict,
        "valid": strict is not None,
        "correct": strict == gold,
        "pred_ref": ref,
        "valid_ref": ref is not None,
        "correct_ref": ref == gold,
        "cram_accuracy": conv,
    }


def summarize(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per mode: Acc and Valid (%) under our strict parser and the reference's first-letter rule, each with
    ``<key>_lo`` / ``<key>_hi`` (95% Wilson over ``n`` items), the crams' mean TF with its t interval (``cram_tf_ci``), and for every
    mode but the baseline ``vs_baseline``: exact McNemar flips on the items both modes answered (``a`` = baseline,
    ``b`` = this mode; ``correct``: strict parser, ``correct_ref``: the reference's)."""
    out = {}
    base = {r["id"]: r for r in rows if r["mode"] == "baseline"}
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        if not rs:
            continue
        n = len(rs)
        tf = mean_ci(r["cram_accuracy"] for r in rs)  # nan (no cram) rows are dropped
        d = {
            "n": n,
            "acc": 100.0 * sum(r["correct"] for r in rs) / n,
            "valid": 100.0 * sum(r["valid"] for r in rs) / n,
            "acc_ref": 100.0 * sum(r["correct_ref"] for r in rs) / n,
            "valid_ref": 100.0 * sum(r["valid_ref"] for r in rs) / n,
            "cram_tf": tf.mean,
            "cram_tf_ci": tf.to_dict(),
            "pred_dist": {x: sum(r["pred"] == x for r in rs) for x in (*LETTERS, None)},
            "gold_dist": {x: sum(r["answer"] == x for r in rs) for x in LETTERS},
        }
        out[mode] = with_interval(d, ["acc", "valid", "acc_ref", "valid_ref"])
        paired = [(base[r["id"]], r) for r in rs if r["id"] in base]
        if mode != "baseline" and paired:
            out[mode]["vs_baseline"] = {
                key: {**mcnemar([b[key] for b, _ in paired], [r[key] for _, r in paired]), "n": len(paired)}
                for key in ("correct", "correct_ref")
            }
    return out


# ------------------------------------------------------------------------------------------- a resumable run
@dataclass(frozen=True)
class ModesPlan:
    """Which modes an MMLU run evaluates, and the cram budgets of the modes that cram."""

    modes: Sequence[str] = ("baseline", "random", "few_shot", "full_prefix")  # cheap modes first
    steps: int = 100  # few_shot cram budget per subject
    full_steps: int | None = None  # full_prefix budget per item (warm-started from the few-shot embedding)
    full_prefix_items: int = 0  # full_prefix on the first N items of each subject (0: every item)
    layout: cl.Layout = field(default_factory=cl.Layout)


def evaluate_modes(
    model: HookedTransformer,
    items: Sequence[Item],
    pool: dict[str, Sequence[Item]],
    plan: ModesPlan,
    out: str | os.PathLike,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Every (mode, item) of ``plan`` not yet in ``out/results.jsonl``, appended as it is scored (a rerun continues
    where a killed one stopped); returns the file's rows of these items and modes. ``pool``: each subject's dev
    items (its first 5 are the shots)."""
    from .downstream import append_results, read_results

    out = Path(out)
    path = out / "results.jsonl"
    have = {(r["mode"], r["id"]) for r in read_results(path)}
    by_subject: dict[str, list[str]] = {}
    for it in items:
        by_subject.setdefault(it.subject, []).append(it.id)
    full = {i for ids in by_subject.values() for i in ids[: plan.full_prefix_items or None]}
    for mode in plan.modes:
        for n, it in enumerate(items):
            if (mode, it.id) in have or (mode == "full_prefix" and it.id not in full):
                continue
            row = evaluate_item(
                model,
                mode,
                it,
                pool[it.subject][:5],
                out / "crams",
                plan.steps,
                layout=plan.layout,
                full_steps=plan.full_steps,
            )
            append_results(path, [row])
            if log is not None:
                log(
                    f"mmlu {mode} {n + 1}/{len(items)} {it.id}: {row['generated']!r} -> {row['pred']} "
                    f"(gold {row['answer']})"
                )
    wanted = {it.id for it in items}
    return [r for r in read_results(path) if r["id"] in wanted and r["mode"] in plan.modes]
