"""Read results back: our run directories and the paper's published trajectories, into one in-memory form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .errors import CramlensError, check
from .layout import Layout
from .results import CrammedSample, CramRun
from .rows import full_horizon, samples_from_rows
from .runs import read_config, read_rows

TRAJECTORIES_HUB = "mrsndmn/progressive_cramming_trajectories"


def load_run(path: str | os.PathLike, model=None) -> CramRun:
    """A run directory as a :class:`CramRun` (attach ``model`` to generate/score from its embeddings).

    Per-sample numbers come from :func:`cramlens.rows.samples_from_rows`, as in the live run; the greedy fields
    are read back from ``samples.json`` when the run finished. Full-cramming rows written before rows carried
    ``tf_exact_prefix`` get it computed from their embedding when ``model`` is given (without a model, such a
    non-converged sample's horizon reads 0).
    """
    p = Path(path)
    config = read_config(p)
    rows = read_rows(p)
    check(len(rows) > 0, f"{p} has no result rows yet; wait for the run or rerun it with --resume")
    st = config["settings"]
    lay = st["layout"]
    layout = Layout(lay["n_mem"], lay["bos"], lay["score_from"], lay["mem_first"])
    if st["kind"] == "full" and model is not None:
        backfill_tf_prefix(model, rows, layout)
    samples = samples_from_rows(rows, st["kind"], layout, model)
    restore_greedy(samples, p / "samples.json")
    return CramRun(st["kind"], samples, rows, config, p)


def restore_greedy(samples: list[CrammedSample], path: Path) -> None:
    """Greedy-reconstruction fields of a finished run's ``samples.json`` (computed with the model at the end)."""
    if not path.exists():
        return
    info = {int(d["sample_id"]): d for d in json.loads(path.read_text())}
    for s in samples:
        d = info.get(s.sample_id, {})
        g = d.get("greedy_exact")
        s.greedy_exact = {"True": True, "False": False}.get(g, g) if isinstance(g, str) else g
        s.greedy_match, s.first_mismatch = d.get("greedy_match"), d.get("first_mismatch")


def backfill_tf_prefix(model, rows: list[dict], layout: Layout) -> None:
    """Set ``tf_exact_prefix`` on full-cramming rows that lack it (older runs), from their embeddings."""
    from .forward import exact_prefix, score, target_logits
    from .layout import build_batch

    for r in rows:
        if full_horizon(r) is not None:
            continue
        seq = list(r["input_ids"])
        batch = build_batch(model, [seq], [len(seq)], layout)
        emb = torch.as_tensor(r["embedding"], dtype=torch.float32).reshape(-1, model.cfg.d_model)
        with torch.no_grad():
            sc = score(target_logits(model, emb.to(model.cfg.device)[None], batch), batch)
        r["tf_exact_prefix"] = int(exact_prefix(batch, sc.correct)[0])


def load_trajectories(
    source: str | os.PathLike = TRAJECTORIES_HUB,
    config_name: str | None = None,
    split: str = "train",
    model=None,
) -> CramRun:
    """The paper's released progressive trajectories (hub id, or a local ``save_to_disk`` / parquet / jsonl path).

    Rows are normalised to the field names of our own runs (``sample_id, stage_index, stage_seq_len, text,
    embedding, final_convergence, steps_taken, information_gain_bits``), so every analysis runs on both.
    """
    import datasets

    p = Path(source)
    try:
        if p.exists() and (p / "dataset_info.json").exists():
            ds = datasets.load_from_disk(str(p))
        elif p.exists():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(p.suffix, "parquet")
            ds = datasets.load_dataset(kind, data_files=str(p), split="train")
        else:
            ds = datasets.load_dataset(str(source), config_name, split=split)
    except Exception as e:  # offline, unknown name, or corrupt files
        if p.exists():
            raise CramlensError(
                f"could not read trajectories at {p}: {type(e).__name__}; pass a datasets dir"
            ) from e
        raise CramlensError(
            f"could not load {source!r} from the Hugging Face hub (it needs network: {type(e).__name__}); "
            "download it where online and pass the local path"
        ) from e
    rows = []
    for r in ds:
        r = dict(r)
        emb = r.get("embedding") or r.get("orig_embedding")
        check(emb is not None, f"{source}: rows have no 'embedding' field; is this a trajectories table?")
        t = torch.tensor(emb, dtype=torch.float32)
        r["embedding"] = t.reshape(-1, t.shape[-1]) if t.dim() > 1 else t.reshape(1, -1)
        r.setdefault(
            "converged", float(r.get("final_convergence", 0.0)) >= float(r.get("convergence_threshold", 1.0))
        )
        rows.append(r)
    config = {"settings": {"kind": "progressive", "source": str(source)}, "created": ""}
    return CramRun("progressive", samples_from_rows(rows, "progressive", Layout(), model), rows, config, None)
