"""Read results back: our run directories and the paper's published trajectories, into one in-memory form."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import CramlensError, check
from .layout import Layout
from .results import CrammedSample, CramRun
from .runs import read_config, read_rows

TRAJECTORIES_HUB = "mrsndmn/progressive_cramming_trajectories"


def load_run(path: str | os.PathLike, model=None) -> CramRun:
    """A run directory as a :class:`CramRun` (attach ``model`` to generate/score from its embeddings)."""
    p = Path(path)
    config = read_config(p)
    rows = read_rows(p)
    check(len(rows) > 0, f"{p} has no result rows yet; wait for the run or rerun it with --resume")
    st = config["settings"]
    lay = st["layout"]
    layout = Layout(lay["n_mem"], lay["bos"], lay["score_from"], lay["mem_first"])
    return CramRun(st["kind"], samples_from_rows(rows, st["kind"], layout, model), rows, config, p)


def samples_from_rows(rows: list[dict], kind: str, layout: Layout, model=None) -> list[CrammedSample]:
    """Per-sample results from trajectory rows (no model needed; greedy fields left empty)."""
    by_sample: dict[int, list[dict]] = {}
    for r in rows:
        by_sample.setdefault(int(r["sample_id"]), []).append(r)
    out = []
    for sid, traj in sorted(by_sample.items()):
        traj.sort(key=lambda r: r["stage_index"])
        passed = [r for r in traj if r.get("converged", r.get("final_convergence", 0) >= 1.0)]
        best = passed[-1] if passed else traj[-1]
        last = traj[-1]
        horizon = best["stage_seq_len"] if passed else 0
        if kind == "full":
            horizon = best["stage_seq_len"] if best.get("final_convergence", 0) >= 1.0 else 0
        emb = best["embedding"]
        if not isinstance(emb, torch.Tensor):
            emb = torch.tensor(emb, dtype=torch.float32).reshape(-1, int(best.get("hidden_size") or len(emb)))
        seq = list(best.get("input_ids") or [])
        out.append(
            CrammedSample(
                sample_id=sid,
                text_id=str(best.get("text_id", sid)),
                text=best.get("text", ""),
                sequence=seq,
                embedding=emb,
                horizon=int(horizon),
                steps=int(best.get("steps_taken", 0) or 0),
                steps_spent=int(last.get("steps_spent", last.get("steps_taken", 0)) or 0),
                information_gain_bits=_num(best.get("information_gain_bits")),
                h_lm_bits=_num(best.get("h_lm_bits")),
                accuracy_final=float(last.get("final_convergence", float("nan"))),
                reason=last.get("reason", ""),
                kind=kind,
                model=model,
                layout=layout,
            )
        )
    return out


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


def _num(x) -> float:
    return float("nan") if x is None else float(x)
