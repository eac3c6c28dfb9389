"""The downstream evaluation driver: cram benchmark contexts with ``cramlens.cram``, score them, keep results resumable.

Run directory (``--out``)::

    out/
      crams/len013/ ...      one cramlens run directory per context length (full cramming needs one length)
      results.jsonl          one row per scored item (appended atomically line by line; a rerun skips done items)
      summary.json           the table of the run (rewritten at the end)

Contexts of different token lengths are crammed in separate ``cram`` calls (full cramming optimises one target
length per batch); inside a length group ``batch_size`` samples share a forward but keep their own AdamW state
and stop independently. The cram of an item is the paper's C.4: the context alone, the ``downstream`` recipe
(lr 0.1, cosine to 0, no warmup, N(0, 0.02^2) init, betas (0.9, 0.999), 1000 steps), converged = teacher-forced
accuracy 1.0 on the context.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

import cramlens as cl
from cramlens.distributed import shard_bounds
from cramlens.errors import check
from cramlens.runs import atomic_write_text
from cramlens.texts import TextSample

from .scoring import ChoiceScores, paired_flips, predict, score_items, summarize_choice_scores, wilson_ci
from .tasks import Item


def context_ids(model: HookedTransformer, text: str) -> list[int]:
    """Token ids of ``text`` without BOS (the layout adds BOS when the model's tokenizer does)."""
    return model.to_tokens(text, prepend_bos=False)[0].tolist()


def token_counter(model: HookedTransformer) -> Callable[[str], int]:
    """``text -> number of tokens`` (no BOS), for the selection rule."""
    return lambda text: len(context_ids(model, text))


def cram_contexts(
    model: HookedTransformer,
    items: Sequence[Item],
    out: str | os.PathLike,
    recipe: str | cl.Recipe = "downstream",
    batch_size: int = 16,
    max_steps: int | None = None,
    seed: int = 0,
    layout: cl.Layout | None = None,
    log: Callable[[str], None] | None = print,
    shard: tuple[int, int] = (0, 1),
    **recipe_overrides,
) -> dict[str, cl.CrammedSample]:
    """Cram every item's context (grouped by token length, resumable) → ``{item.id: CrammedSample}``.

    ``layout`` defaults to the paper's (the memory also predicts the first token); ``Layout(score_from="text")`` is
    Kuratov's protocol (the first token is an input only). The model is used as given: the caller decides
    whether it runs the fast path (``cramlens.fast.optimize``).

    Under ``torchrun`` pass ``shard=cramlens.distributed.rank_and_world()``: each rank crams a contiguous shard of
    the length groups (``distributed.shard_bounds``) and returns those; rank 0 then waits for every other group's
    finished run directory and returns all of them.
    """
    out, layout = Path(out), layout or cl.Layout()
    groups: dict[int, list[tuple[int, Item, list[int]]]] = {}
    for n, it in enumerate(items):
        ids = context_ids(model, it.context)
        check(len(ids) > 0, f"item {it.id}: empty context")
        groups.setdefault(len(ids), []).append((n, it, ids))
    ordered = sorted(groups.items())
    rank, world = shard
    start, end = shard_bounds(len(ordered), rank, world)
    others = ordered[:start] + ordered[end:] if rank == 0 else []
    done: dict[str, cl.CrammedSample] = {}
    for k, (length, group) in enumerate(ordered[start:end] + others):
        texts = [TextSample(f"{it.task}:{it.id}", it.context, tuple(ids), it.task) for _, it, ids in group]
        where = out / f"len{length:03d}"
        if k >= end - start:  # another rank's group: wait until that rank has finished it
            _wait_for(where / "samples.json", log)
        if (where / "samples.json").exists():  # finished earlier: read it back, no model work
            run = _finished_run(where, model, [t.sample_id for t in texts], layout)
        else:
            run = cl.cram(
                model,
                texts,
                recipe=recipe,
                batch_size=batch_size,
                max_steps=max_steps,
                seed=seed,
                layout=layout,
                out=where,
                resume=True,
                first_id=group[0][0],
                **recipe_overrides,
            )
        for (_, it, _), s in zip(group, run.samples, strict=True):
            done[it.id] = s
        if log is not None:
            conv = sum(s.accuracy_final >= 1.0 for s in run.samples)
            steps = sum(s.steps for s in run.samples) / len(run.samples)
            log(f"cram len {length}: {conv}/{len(run.samples)} converged, mean steps {steps:.0f}")
    return done


def _wait_for(path: Path, log: Callable[[str], None] | None, timeout_s: float = 7 * 24 * 3600.0) -> None:
    """Block until ``path`` exists (another rank writes it when its cram run is finished)."""
    if not path.exists() and log is not None:
        log(f"waiting for another rank to finish {path.parent}")
    deadline = time.time() + timeout_s
    while not path.exists():
        check(time.time() < deadline, f"{path} did not appear in time; is every rank still running?")
        time.sleep(2.0)


def _finished_run(
    path: Path, model: HookedTransformer, text_ids: list[str], layout: cl.Layout | None = None
) -> cl.CramRun:
    """A finished cram run directory (``load_run`` restores the greedy fields of its ``samples.json``), checked
    against the layout the caller crams with when given."""
    run = cl.load_run(path, model)
    check([s.text_id for s in run.samples] == text_ids, f"{path} holds other contexts; use another --out")
    check(
        layout is None or all(s.layout == layout for s in run.samples),
        f"{path} was crammed with another layout (score_from={run.samples[0].layout.score_from!r}); "
        "use another --out",
    )
    return run


def converged(sample: cl.CrammedSample) -> bool:
    """The paper's ``is_fully_converged``: teacher-forced accuracy 1.0 on the whole context."""
    return sample.accuracy_final >= 1.0 and sample.horizon == len(sample.sequence)


def missed_only_first(sample: cl.CrammedSample) -> bool:
    """Not converged, and the one teacher-forced miss is the first scored token: with the paper's scoring that is
    the memory's own prediction of t0, which a memory at position 0 (the attention sink) can fail while it
    reconstructs everything after it."""
    first = 0 if sample.layout.score_from == "memory" else 1
    scored = len(sample.sequence) - first
    return (
        not converged(sample)
        and sample.horizon == first
        and round(sample.accuracy_final * scored) == scored - 1
    )


def load_crams(out: str | os.PathLike, model: HookedTransformer | None = None) -> dict[str, cl.CrammedSample]:
    """The crams of a downstream run directory (``out/crams`` or ``out`` itself) → ``{item id: sample}``."""
    root = Path(out)
    root = root / "crams" if (root / "crams").exists() else root
    dirs = sorted(p for p in root.glob("len*") if (p / "samples.json").exists())
    check(len(dirs) > 0, f"no finished crams under {root}; run scripts/downstream.py --task hellaswag first")
    out_map: dict[str, cl.CrammedSample] = {}
    for d in dirs:
        cfg = json.loads((d / "config.json").read_text())
        for s in _finished_run(d, model, cfg["settings"]["samples"]).samples:
            out_map[s.text_id.split(":", 1)[1]] = s
    return out_map


# ------------------------------------------------------------------------------------------- results I/O
def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of ``results.jsonl`` (a torn last line is ignored)."""
    p = Path(path)
    rows = []
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def append_results(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Append rows to a jsonl file, fsynced."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_summary(path: str | os.PathLike, summary: dict) -> None:
    """Atomically write ``summary`` as JSON (``nan`` → ``null``)."""
    atomic_write_text(Path(path), json.dumps(_finite(summary), indent=1))


def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and x != x else x


# ------------------------------------------------------------------------------------------- choice tasks
VARIANTS = ("context_ending", "ending_only", "edge", "compression_only")


def evaluate_choices(
    model: HookedTransformer,
    items: Sequence[Item],
    crams: dict[str, cl.CrammedSample],
    out: str | os.PathLike,
    variants: Sequence[str] = VARIANTS,
    joiner: str = " ",
    batch_size: int = 16,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Score every item without and with its crammed context; rows to ``out/results.jsonl``; returns the summary."""
    out = Path(out)
    path = out / "results.jsonl"
    have = {r["id"] for r in read_results(path)}
    todo = [it for it in items if it.id not in have]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        base = score_items(
            model, chunk, None, ("context_ending", "ending_only"), joiner, batch_size=batch_size
        )
        mem = torch.stack([crams[it.id].embedding for it in chunk]).to(model.cfg.device)
        comp = score_items(model, chunk, mem, variants, joiner, batch_size=batch_size)
        append_results(path, _rows(chunk, base, comp, crams))
        if log is not None:
            log(f"scored {min(start + batch_size, len(todo))}/{len(todo)} items")
    _add_control(model, items, crams, path, joiner, batch_size, log)
    rows = [r for r in read_results(path) if r["id"] in {it.id for it in items}]
    summary = summarize_rows(rows)
    write_summary(out / "summary.json", summary)
    return summary


#: Variants scored with the control memory: the two that keep the context in the text.
CONTROL_VARIANTS = ("context_ending", "ending_only")


def norm_matched_random(mem: torch.Tensor, items: Sequence[Item]) -> torch.Tensor:
    """Control memories: per item a random direction with its crammed vector's norm (seeded by the item id).

    Scoring with these separates what the crammed *content* does from what any vector of that norm at position 0
    does (e.g. serving as the attention sink the plain text lacks).
    """
    out = torch.empty_like(mem)
    for i, it in enumerate(items):
        g = torch.Generator().manual_seed(zlib.crc32(it.id.encode()))
        r = torch.randn(mem[i].shape, generator=g, dtype=torch.float32).to(mem.device, mem.dtype)
        norms = mem[i].norm(dim=-1, keepdim=True) / r.norm(dim=-1, keepdim=True)
        out[i] = r * norms
    return out


def _add_control(model, items, crams, path: Path, joiner: str, batch_size: int, log) -> None:
    """Score the control memory for every row that lacks it (new rows, and rows written before the control
    existed); rewrites ``results.jsonl`` atomically."""
    rows = read_results(path)
    by_id = {it.id: it for it in items}
    todo = [r for r in rows if "random" not in r and r["id"] in by_id]
    if not todo:
        return
    for start in range(0, len(todo), batch_size):
        chunk = [by_id[r["id"]] for r in todo[start : start + batch_size]]
        mem = torch.stack([crams[it.id].embedding for it in chunk]).to(model.cfg.device)
        ctrl = score_items(
            model, chunk, norm_matched_random(mem, chunk), CONTROL_VARIANTS, joiner, batch_size=batch_size
        )
        for i, r in enumerate(todo[start : start + batch_size]):
            r["random"] = {v: ctrl.nll[v][i] for v in ctrl.nll}
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    if log is not None:
        log(f"scored the random-memory control for {len(todo)} rows")


def _rows(chunk: Sequence[Item], base: ChoiceScores, comp: ChoiceScores, crams: dict) -> list[dict]:
    rows = []
    for i, it in enumerate(chunk):
        s = crams[it.id]
        rows.append(
            {
                "id": it.id,
                "label": it.label,
                "n_tokens": base.n_tokens[i],
                "converged": converged(s),
                "missed_only_first": missed_only_first(s),
                "cram_steps": s.steps,
                "cram_len": len(s.sequence),
                "greedy_exact": s.greedy_exact,
                "base": {v: base.nll[v][i] for v in base.nll},
                "cram": {v: comp.nll[v][i] for v in comp.nll},
            }
        )
    return rows


def summarize_rows(rows: Sequence[dict]) -> dict:
    """Base / Cram (/ random-memory control) accuracies per variant with n and 95% Wilson intervals, over all items
    and over the converged subset; Conv%; ``paired_converged`` / ``paired_all``: ``{ref}_vs_cram`` exact McNemar
    flips per variant (``a`` = the reference, ``b`` = the cram: ``b_only`` items the memory turns right)."""
    base = {v: [r["base"][v] for r in rows] for v in rows[0]["base"]} if rows else {}
    comp = {v: [r["cram"][v] for r in rows] for v in rows[0]["cram"]} if rows else {}
    labels = [r["label"] for r in rows]
    ntok = [r["n_tokens"] for r in rows]
    conv = [bool(r["converged"]) for r in rows]
    conv_ci = wilson_ci(sum(conv), len(rows))
    out = {
        "n_items": len(rows),
        "conv_pct": 100.0 * sum(conv) / max(1, len(rows)),
        "conv_pct_lo": conv_ci.lo,
        "conv_pct_hi": conv_ci.hi,
        # rows from before this field count as unknown (None), not as 0
        "missed_only_first": sum(bool(r["missed_only_first"]) for r in rows)
        if all("missed_only_first" in r for r in rows)
        else None,
        "base": summarize_choice_scores(base, labels, ntok),
        "base_converged": summarize_choice_scores(base, labels, ntok, conv),
        "cram": summarize_choice_scores(comp, labels, ntok),
        "cram_converged": summarize_choice_scores(comp, labels, ntok, conv),
    }
    refs = {"base": base}
    if rows and all("random" in r for r in rows):
        refs["random"] = ctrl = {v: [r["random"][v] for r in rows] for v in rows[0]["random"]}
        out["random"] = summarize_choice_scores(ctrl, labels, ntok)
        out["random_converged"] = summarize_choice_scores(ctrl, labels, ntok, conv)
    # paired (same items): what the memory turns right / wrong against no memory and against the control, with
    # the exact McNemar p, on the converged subset and on all items
    for key, mask in (("paired_converged", conv), ("paired_all", None)):
        out[key] = {
            f"{ref}_vs_cram": {
                v: paired_flips(predict(nll[v]), predict(comp[v]), labels, mask) for v in nll if v in comp
            }
            for ref, nll in refs.items()
        }
    return out
