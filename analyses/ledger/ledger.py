"""The ledger itself: every claim's row for every model, the cross-model rows, the protocol and the rule."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .claims import CLAIMS, Row, evaluate
from .compare import model_size_rows
from .context import ModelInfo
from .protocols import Protocol, describe
from .verdict import RULE


def command(model: str, protocol: str, out: Path, step: str | None = None) -> str:
    """The command that (re)makes a step's numbers (it resumes, or skips what is finished)."""
    only = f" --only {step}" if step else ""
    return f"python scripts/reproduce.py --model {model} --protocol {protocol} --out {out}{only}"


@dataclass
class Ledger:
    protocol: str
    protocol_lines: list[str]
    purpose: str
    rule: str
    models: dict[str, dict]  # name -> ModelInfo fields
    rows: dict[str, list[Row]]  # name -> one row per claim
    cross_model: list[Row]
    elapsed: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> step -> wall_s / cpu_s
    created: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = {m: [r.to_dict() for r in rs] for m, rs in self.rows.items()}
        d["cross_model"] = [r.to_dict() for r in self.cross_model]
        return d

    def counts(self, model: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows[model]:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out


def build_ledger(per_model: dict[str, tuple[ModelInfo, dict]], protocol: Protocol, out: Path) -> Ledger:
    """Rows of every claim for every model from its finished steps' results (unfinished steps: "not run")."""
    rows = {
        name: [evaluate(c, name, res, command(name, protocol.name, out, c.step)) for c in CLAIMS]
        for name, (_, res) in per_model.items()
    }
    models_arg = " --model ".join(per_model)
    cross = model_size_rows(per_model, command(models_arg, protocol.name, out, "progressive"))
    return Ledger(
        protocol.name,
        describe(protocol),
        protocol.purpose,
        RULE,
        {name: info.__dict__ for name, (info, _) in per_model.items()},
        rows,
        cross,
        {name: {s: r.get("elapsed", {}) for s, r in res.items()} for name, (_, res) in per_model.items()},
    )
