"""Run directories: every result written incrementally and atomically, resumable, readable back in IPython.

```
run/
  config.json          every setting, versions, seed (written once; a resume must match it)
  rows.jsonl           append-only result rows (one per stage / per sample), fsynced line by line
  state/batch-K.*      checkpoint of the batch in progress (tensors + the row count it belongs to)
  table/               the rows as a Hugging Face `datasets` table (reference-compatible field names)
  embeddings.safetensors  final embedding of every sample
  report.md            the human-readable summary
```
A kill at any moment loses at most the steps since the last checkpoint: rows past the checkpoint's row count are
dropped on resume and recomputed bit-identically from the checkpointed state.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CramlensError, check

ROWS = "rows.jsonl"
CONFIG = "config.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def encode_tensor(t: torch.Tensor) -> dict:
    a = t.detach().cpu().float().numpy()
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def decode_tensor(d: dict | None) -> torch.Tensor | None:
    if d is None:
        return None
    a = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.float32).reshape(d["shape"])
    return torch.from_numpy(a.copy())


def environment() -> dict:
    import transformer_lens  # noqa: F401
    import transformers

    try:
        from importlib.metadata import version

        tl = version("transformer-lens")
    except Exception:  # pragma: no cover
        tl = "unknown"
    return {
        "torch": torch.__version__,
        "transformer_lens": tl,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def existing_run(path: Path) -> CramlensError:
    """The error for a new run started where one already is (with the two ways out)."""
    return CramlensError(f"{path} already holds a run; pass --resume to continue it or choose another --out")


@dataclass
class RunDir:
    """A run directory being written (see module docstring)."""

    path: Path
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def open(
        cls, path: str | os.PathLike, config: dict, resume: bool = False, overwrite: bool = False
    ) -> RunDir:
        """Create ``path`` with ``config``; with ``resume`` continue an existing run with the same settings."""
        p = Path(path)
        cfg_path = p / CONFIG
        if cfg_path.exists() and not overwrite:
            if not resume:
                raise existing_run(p)
            old = json.loads(cfg_path.read_text())
            diff = sorted(
                k
                for k in set(old["settings"]) | set(config["settings"])
                if old["settings"].get(k) != config["settings"].get(k)
            )
            check(
                not diff,
                f"--resume: settings differ from the run in {p} ({', '.join(diff)}); use the same flags",
            )
            run = cls(p)
            run.rows = read_rows(p)
            return run
        if overwrite and p.exists():
            import shutil

            shutil.rmtree(p)
        p.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg_path, json.dumps(config, indent=2, default=str))
        return cls(p)

    def append_rows(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        if not rows:
            return
        with open(self.path / ROWS, "a") as f:
            for r in rows:
                f.write(json.dumps(_jsonable(r)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(rows)

    def truncate_rows(self, n: int) -> None:
        """Keep only the first ``n`` rows (those covered by the checkpoint being resumed)."""
        if len(self.rows) != n:
            self.replace_rows(self.rows[:n])

    def replace_rows(self, rows: list[dict]) -> None:
        self.rows = list(rows)
        atomic_write_text(self.path / ROWS, "".join(json.dumps(_jsonable(r)) + "\n" for r in self.rows))

    # -------------------------------------------------------------- checkpoints of an unfinished batch
    def save_checkpoint(self, batch: int, tensors: dict[str, torch.Tensor]) -> None:
        atomic_save_tensors(
            self.path / "state" / f"batch-{batch}.safetensors", tensors, {"n_rows": str(len(self.rows))}
        )

    def load_checkpoint(self, batch: int) -> tuple[dict[str, torch.Tensor], int] | None:
        p = self.path / "state" / f"batch-{batch}.safetensors"
        if not p.exists():
            return None
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(p), "pt") as f:
            n_rows = int(f.metadata()["n_rows"])
        return load_file(str(p)), n_rows

    def clear_checkpoint(self, batch: int) -> None:
        p = self.path / "state" / f"batch-{batch}.safetensors"
        if p.exists():
            p.unlink()

    def write_table(self, name: str = "table") -> Path:
        """Materialise the rows as a ``datasets`` table (``embedding`` as a flat float list)."""
        import datasets
        from datasets import Dataset

        datasets.disable_progress_bars()

        keys = list(
            dict.fromkeys(k for r in self.rows for k in r)
        )  # a resumed older run: rows gain new fields
        flat = []
        for r in self.rows:
            d = {k: r.get(k) for k in keys}
            for k in ("embedding", "coefficients"):
                t = d.get(k)
                d[k] = t.reshape(-1).tolist() if isinstance(t, torch.Tensor) else None
            flat.append(d)
        out = self.path / name
        tmp = self.path / f".{name}.tmp"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        Dataset.from_list(flat).save_to_disk(str(tmp))
        if out.exists():
            import shutil

            shutil.rmtree(out)
        os.replace(tmp, out)
        return out


def _jsonable(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, torch.Tensor):
            out[k] = {"__tensor__": encode_tensor(v)}
        elif isinstance(v, float) and not np.isfinite(v):
            out[k] = {"__float__": str(v)}
        else:
            out[k] = v
    return out


def _unjson(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, dict) and "__tensor__" in v:
            out[k] = decode_tensor(v["__tensor__"])
        elif isinstance(v, dict) and "__float__" in v:
            out[k] = float(v["__float__"])
        else:
            out[k] = v
    return out


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a run directory; a torn last line (killed mid-write) is ignored."""
    p = Path(path) / ROWS
    if not p.exists():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(_unjson(json.loads(line)))
        except json.JSONDecodeError:
            break
    return rows


def read_config(path: str | os.PathLike) -> dict:
    p = Path(path) / CONFIG
    check(
        p.exists(), f"{Path(path)} is not a cramlens run directory (no config.json); pass the --out of a run"
    )
    return json.loads(p.read_text())
