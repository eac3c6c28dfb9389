"""The attention-sink table (REFERENCE C.7, D.9): how much attention position 0 draws with a crammed memory there.

Math: :func:`sink_profile` (per layer, the mean over truncation lengths s of the text queries' attention to
position 0, in %), :func:`running_means`, :func:`pearson` and :func:`sink_table` (mean ± std, difference to the
memory-free input and profile correlation per condition).

Driver (``scripts/knockout.py --sink``): :func:`sink_crams` crams the texts (a finished progressive run, a new
progressive run: the paper's protocol, or full crams), :func:`measure_sinks` profiles every sample with the cram,
without memory (``orig``: BOS or the first token at position 0) and with an ordinary token in the slot (``control``)
and :func:`run_sink` writes ``<out>/sink_<model>.json`` and ``<figures>/<model>_sink.md`` (beside
:data:`PAPER_SINK`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

import cramlens as cl
from cramlens.layout import placeholder_id
from cramlens.runs import atomic_write_text

PAPER_SINK = {  # REFERENCE D.9: (compression, BOS original, diff, corr)
    "smollm2-135m": ("60.79 ± 17.6", "74.04 ± 11.45", "−13.25", "0.8475"),
    "gemma-3-270m": ("12.94 ± 3.04", "60.87 ± 1.43", "−47.93", "0.3448"),
}


@torch.no_grad()
def sink_profile(
    model: HookedTransformer, ids: Sequence[int], memory: torch.Tensor | None, s_max: int
) -> torch.Tensor:
    """``m̄_l`` per layer: mean over s = 2..s_max of ``mean_{q=1..s-1} A_l(q, 0)`` for one input (%).

    The input is ``[mem] + ids`` with ``memory`` (position 0 = the memory), else ``ids`` (position 0 = BOS, or the
    first token for models without BOS). Causality makes ``A_l(q, 0)`` independent of the truncation length, so one
    forward over ``s_max`` positions gives every ``m_l(s)``.
    """
    n_mem = 0 if memory is None else memory.shape[-2]
    toks = ([placeholder_id(model)] * n_mem + list(ids))[:s_max]
    store: dict[int, torch.Tensor] = {}
    hs = cl.capture_attention_to(model, store, key=0, query_start=1)
    if memory is not None:
        hs = cl.inject(memory.reshape(1, n_mem, -1).to(model.cfg.device)) + hs
    with hs.applied(model):
        model(torch.tensor([toks], device=model.cfg.device), stop_at_layer=model.cfg.n_layers)
    prof = torch.zeros(model.cfg.n_layers)
    for layer, a in store.items():
        prof[layer] = running_means(a[0].float().cpu()).mean()
    return 100.0 * prof


def running_means(a: torch.Tensor) -> torch.Tensor:
    """``m(s) = mean(a[:s-1])`` for s = 2..len(a)+1: cumulative means of the per-query attention to key 0."""
    return torch.cumsum(a, 0) / torch.arange(1, len(a) + 1, dtype=a.dtype)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two profiles (nan when either is constant)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    xc, yc = x - x.mean(), y - y.mean()
    den = float(xc.norm() * yc.norm())
    return float((xc * yc).sum()) / den if den > 0 else float("nan")


def sink_table(profiles: dict[str, torch.Tensor], reference: str = "orig") -> dict[str, dict[str, float]]:
    """The C.7 table from per-sample layer profiles ``{condition: [samples, layers]}`` (in %).

    Per condition: mean ± std over samples of the layer-mean, ``diff`` = mean over samples of (condition − reference),
    ``corr`` = Pearson between the sample-averaged layer profiles of the condition and of the reference.
    """
    ref = profiles[reference]
    out = {}
    for name, p in profiles.items():
        per_sample = p.mean(dim=1)
        out[name] = {
            "mean": float(per_sample.mean()),
            "std": float(per_sample.std(unbiased=True)) if len(per_sample) > 1 else 0.0,
            "diff": float((per_sample - ref.mean(dim=1)).mean()),
            "corr": pearson(p.mean(dim=0), ref.mean(dim=0)),
        }
    return out


# ------------------------------------------------------------------------------------------- the table's driver
def sink_crams(
    model: HookedTransformer,
    model_name: str,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    data: str | Path = "builtin",
    n_texts: int = 4,
    seq_len: int = 16,
    source: str = "progressive",
    steps: int | None = None,
    score_from: str = "memory",
) -> cl.CramRun:
    """The crammed texts of the sink table: a finished progressive run (``run_dir``), a new progressive run
    (``source="progressive"``, into ``<out>/sink_progressive_<model>``) or full crams (``<out>/sink_crams_<model>``).
    ``steps``: the budget per text (default: the paper recipe's per-sample budget, 300 for full crams)."""
    if run_dir:
        return cl.load_run(run_dir, model=model)
    texts = cl.load_texts(data, model.tokenizer, n_samples=n_texts, seq_len=seq_len)
    layout = cl.Layout(score_from=score_from)
    if source == "progressive":
        budget = {} if steps is None else {"steps_per_sample": steps}
        return cl.progressive_cram(
            model,
            texts,
            recipe="paper",
            batch_size=len(texts),
            layout=layout,
            out=Path(out) / f"sink_progressive_{model_name}",
            resume=True,
            **budget,
        )
    return cl.cram(
        model,
        texts,
        recipe="downstream",
        max_steps=steps or 300,
        batch_size=len(texts),
        layout=layout,
        out=Path(out) / f"sink_crams_{model_name}",
        resume=True,
        check_greedy=False,
    )


def sink_tokens(s) -> list[int]:
    """What the sink profile reads: the reconstructed prefix (progressive) or the whole crammed text (full)."""
    return list(s.sequence[: s.horizon]) if s.kind == "progressive" else list(s.sequence)


def measure_sinks(model: HookedTransformer, samples: Sequence, control_token: str) -> tuple[int, dict]:
    """``(s_max, {condition: [samples, layers]})``: the profiles with the cram (``compression``), without memory
    (``orig``) and with ``control_token``'s embedding in the slot (``control``), over the shortest sample's
    positions (the same count with and without memory)."""
    s_max = min(len(sink_tokens(s)) for s in samples)
    tok = model.to_tokens(control_token, prepend_bos=False)[0, 0].item()
    ctrl = model.W_E[tok].detach()[None]
    prof: dict[str, list[torch.Tensor]] = {"compression": [], "orig": [], "control": []}
    for s in samples:
        seq = sink_tokens(s)
        prof["compression"].append(sink_profile(model, seq, s.embedding, s_max))
        prof["orig"].append(sink_profile(model, seq, None, s_max))
        prof["control"].append(sink_profile(model, seq, ctrl, s_max))
    return s_max, {k: torch.stack(v) for k, v in prof.items()}


def run_sink(
    model: HookedTransformer,
    model_name: str,
    out: str | Path,
    figures: str | Path,
    *,
    control_token: str = " the",
    converged_only: bool = False,
    extra_samples: Callable[[], Sequence] | None = None,
    log: Callable[[str], None] = print,
    show: Callable[[str], None] = print,
    **cram_args,
) -> dict:
    """The C.7 table of one model: cram (:func:`sink_crams` with ``cram_args``), profile, tabulate, write.

    Uses every crammed text (only exactly reconstructed ones when ``converged_only``) with at least two tokens to
    measure, then the samples ``extra_samples()`` returns (e.g. HellaSwag crams). Writes
    ``<out>/sink_<model_name>.json`` and ``<figures>/<model_name>_sink.md``; returns the JSON's content.
    """
    from analyses.downstream import converged
    from analyses.plots import eval_figures as ef

    run = sink_crams(model, model_name, out, **cram_args)
    ok = converged if converged_only else (lambda s: True)
    # a progressive sample is measured on the prefix its final stage reconstructs (horizon 0: nothing to measure)
    samples = [s for s in run.samples if ok(s) and len(sink_tokens(s)) >= 2]
    if extra_samples is not None:
        samples += list(extra_samples())
    # teacher-forced accuracy on what is measured: the horizon prefix (progressive, 1.0 by construction) or the text
    tf = [s.accuracy() if s.kind == "progressive" else s.accuracy_final for s in samples]
    log(
        f"sink table on {len(samples)} crammed texts, {sum(t >= 1 for t in tf)} exact, mean TF {sum(tf) / max(1, len(tf)):.3f}"
    )
    if not samples:
        raise cl.CramlensError("no crammed text to analyse; raise --sink-steps or drop --sink-converged-only")
    s_max, profiles = measure_sinks(model, samples, control_token)
    res = {
        "model": model_name,
        "n": len(samples),
        "s_max": s_max,
        "table": sink_table(profiles, "orig"),
        "tf": tf,
        "embeddings": sorted({s.kind for s in samples}),  # final progressive-stage or full-cram embeddings
        "profiles": {k: v.mean(0).tolist() for k, v in profiles.items()},
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out) / f"sink_{model_name}.json", json.dumps(res, indent=1))
    md = ef.sink_markdown({model_name: res}, PAPER_SINK)
    show(md)
    figs = Path(figures)
    figs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(figs / f"{model_name}_sink.md", md + "\n")
    return res
