"""A short finetune that restores language modelling in a truncated model (:mod:`analyses.depth`).

:func:`finetune`: all parameters (or only the blocks) trained on next-token loss over packed windows of a text
corpus (:func:`lm_corpus`: the built-in CPython docs, a PG-19-style jsonl, any cramlens document source), AdamW +
linear warmup + cosine to ``min_lr``, gradient clipping 1.0, validation loss on held-out documents before and
after, a checkpoint (trained tensors, optimizer, step) every ``checkpoint_every`` steps in the run directory
(``resume`` continues it), and the trained tensors saved as ``model.safetensors`` + ``finetune.json`` at the end
(:func:`load_finetuned` puts them back on a fresh truncation). :data:`CPU_FINETUNE` is the short default;
:data:`PAPER_FINETUNE` the paper's full recipe (CH ``finetune_causal_lm.py``: fineweb-edu, 5,000 steps, seq 1024,
256 sequences/step, lr 1e-3, wd 0.01, ``cosine_with_min_lr`` min 1e-5, warmup 500, bf16, 8xA100; Llama-3.1-8B
first-N: 15,000 steps, lr 3e-4, warmup 1000).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from cramlens.errors import check
from cramlens.runs import atomic_save_tensors, atomic_write_bytes, atomic_write_text

__all__ = [
    "CPU_FINETUNE",
    "PAPER_FINETUNE",
    "FinetuneConfig",
    "FinetuneResult",
    "lm_corpus",
    "validation_loss",
    "lm_loss",
    "evaluate",
    "finetune",
    "load_finetuned",
]


# ----------------------------------------------------------------------------------------------- data
def lm_corpus(
    model: HookedTransformer,
    source: str = "builtin",
    seq_len: int = 64,
    skip_docs: int = 0,
    val_docs: int = 4,
    max_docs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed next-token windows ``(train [N, seq_len], val [M, seq_len])`` from a cramlens document source.

    Documents (``iter_documents``: ``builtin``, a .txt/.jsonl file or folder, a hub set) after the first
    ``skip_docs`` (e.g. the texts you will cram) are tokenized without special tokens and joined with EOS; the
    last ``val_docs`` documents give the validation windows. When the model's tokenizer adds BOS
    (``cfg.default_prepend_bos``) every window starts with BOS, as at the start of a pretraining document.
    """
    from cramlens.documents import iter_documents

    check(seq_len >= 2, f"finetune seq_len {seq_len}; use at least 2")
    docs = []
    for i, (_, text) in enumerate(iter_documents(source)):
        if i < skip_docs:
            continue
        docs.append(text)
        if max_docs is not None and len(docs) >= max_docs:
            break
    check(
        len(docs) > val_docs,
        f"corpus {source!r} has {len(docs)} documents after skipping {skip_docs}; need > {val_docs}",
    )
    tok = model.tokenizer
    bos = [tok.bos_token_id] if model.cfg.default_prepend_bos and tok.bos_token_id is not None else []
    sep = [tok.eos_token_id] if tok.eos_token_id is not None else []
    width = seq_len - len(bos)

    def windows(texts: list[str]) -> torch.Tensor:
        ids: list[int] = []
        for t in texts:
            ids += list(tok(t, add_special_tokens=False, verbose=False)["input_ids"]) + sep
        rows = [bos + ids[i : i + width] for i in range(0, len(ids) - width + 1, width)]
        return torch.tensor(rows, dtype=torch.long).reshape(-1, seq_len)

    split = len(docs) - val_docs if val_docs > 0 else len(docs)
    train, val = windows(docs[:split]), windows(docs[split:])
    check(
        len(train) > 0 and (val_docs == 0 or len(val) > 0),
        f"corpus {source!r} is too short for seq_len {seq_len}",
    )
    return train, val


# ----------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class FinetuneConfig:
    """Recovery finetune settings (defaults: :data:`CPU_FINETUNE`)."""

    steps: int = 300
    seq_len: int = 64
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 30
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    # "all" (the paper's) or "blocks" (embedding/unembedding frozen: cheap for big vocabularies)
    trainable: str = "all"
    source: str = "builtin"
    skip_docs: int = 0
    val_docs: int = 4
    max_val_windows: int = 64
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self):
        check(self.steps >= 0 and self.batch_size >= 1, "finetune: steps >= 0 and batch_size >= 1")
        check(self.trainable in ("all", "blocks"), "finetune: trainable must be 'all' or 'blocks'")
        check(0 <= self.min_lr <= self.lr, "finetune: need 0 <= min_lr <= lr")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def with_(self, **changes) -> FinetuneConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


CPU_FINETUNE = FinetuneConfig()
PAPER_FINETUNE = FinetuneConfig(
    steps=5000,
    seq_len=1024,
    batch_size=256,
    lr=1e-3,
    min_lr=1e-5,
    warmup=500,
    weight_decay=0.01,
    source="HuggingFaceFW/fineweb-edu",
)


@dataclass
class FinetuneResult:
    config: dict
    val_loss_before: float
    val_loss_after: float
    steps: int
    train_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def lm_loss(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over all positions of ``tokens [B, T]``."""
    return model(tokens.to(model.cfg.device), return_type="loss")


@torch.no_grad()
def evaluate(model: HookedTransformer, tokens: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token loss (nats) over the rows of ``tokens``."""
    total, count = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        chunk = tokens[i : i + batch_size]
        total += float(lm_loss(model, chunk)) * len(chunk)
        count += len(chunk)
    return total / max(1, count)


def _corpus(model: HookedTransformer, cfg: FinetuneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return lm_corpus(model, cfg.source, cfg.seq_len, cfg.skip_docs, cfg.val_docs)


def validation_loss(model: HookedTransformer, cfg: FinetuneConfig = CPU_FINETUNE) -> float:
    """The loss a :func:`finetune` with ``cfg`` reports, on the same held-out windows, for a model left as it is."""
    return evaluate(model, _corpus(model, cfg)[1][: cfg.max_val_windows])


def _lr_factor(step: int, cfg: FinetuneConfig) -> float:
    if cfg.warmup > 0 and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.min_lr / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _trainable(model: HookedTransformer, which: str) -> dict[str, torch.nn.Parameter]:
    return {k: p for k, p in model.named_parameters() if which == "all" or k.startswith("blocks.")}


def _order(n_rows: int, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    need = steps * batch_size
    perms = [torch.randperm(n_rows, generator=g) for _ in range(max(1, math.ceil(need / n_rows)))]
    return (
        torch.cat(perms)[:need].view(steps, batch_size)
        if steps
        else torch.empty(0, batch_size, dtype=torch.long)
    )


def finetune(
    model: HookedTransformer,
    cfg: FinetuneConfig = CPU_FINETUNE,
    out: str | Path | None = None,
    resume: bool = True,
    corpus: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place on next-token loss (see module doc); returns losses before/after.

    With ``out``, a finished run there (same config) is loaded instead of retrained, and an interrupted one is
    continued from its last checkpoint. The model is left frozen and in eval mode.
    """
    out = Path(out) if out is not None else None
    # a record without its weights (e.g. a clone that committed results but not checkpoints) retrains
    if (
        out is not None
        and resume
        and (out / "finetune.json").exists()
        and (out / "model.safetensors").exists()
    ):
        done = json.loads((out / "finetune.json").read_text())
        if done["config"] == cfg.to_dict():
            load_finetuned(model, out)
            return FinetuneResult(**{**done, "path": str(out)})
    train, val = corpus if corpus is not None else _corpus(model, cfg)
    val = val[: cfg.max_val_windows]
    t0 = time.time()
    params = _trainable(model, cfg.trainable)
    model.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    order = _order(len(train), cfg.steps, cfg.batch_size, cfg.seed)
    start, losses = 0, []
    ck = out / "checkpoint.pt" if out is not None else None
    before = None
    if ck is not None and resume and ck.exists():
        state = torch.load(ck, weights_only=False)
        if state["config"] == cfg.to_dict():
            model.load_state_dict(state["params"], strict=False)
            opt.load_state_dict(state["optim"])
            sched.load_state_dict(state["sched"])
            start, losses, before = state["step"], state["losses"], state["val_before"]
    model.eval()  # TL has no dropout; eval keeps any future dropout off
    if before is None:
        before = evaluate(model, val)
    for step in range(start, cfg.steps):
        loss = lm_loss(model, train[order[step]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
        if ck is not None and ((step + 1) % cfg.checkpoint_every == 0) and step + 1 < cfg.steps:
            import io

            buf = io.BytesIO()
            torch.save(
                {
                    "config": cfg.to_dict(),
                    "params": {k: p.detach() for k, p in params.items()},
                    "optim": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": step + 1,
                    "losses": losses,
                    "val_before": before,
                },
                buf,
            )
            atomic_write_bytes(ck, buf.getvalue())
    model.requires_grad_(False)
    after = evaluate(model, val)
    result = FinetuneResult(cfg.to_dict(), before, after, cfg.steps, losses, time.time() - t0)
    if out is not None:
        atomic_save_tensors(out / "model.safetensors", {k: p.detach() for k, p in params.items()})
        result.path = str(out)
        atomic_write_text(
            out / "finetune.json", json.dumps({k: v for k, v in result.to_dict().items() if k != "path"})
        )
        if ck is not None and ck.exists():
            ck.unlink()
    return result


def load_finetuned(model: HookedTransformer, path: str | Path) -> HookedTransformer:
    """Load the tensors a :func:`finetune` run saved in ``path`` into ``model`` (a fresh truncation of the same kind)."""
    from safetensors.torch import load_file

    p = Path(path) / "model.safetensors"
    check(p.exists(), f"{Path(path)} holds no finished finetune (model.safetensors); run the finetune first")
    tensors = load_file(str(p), device=str(model.cfg.device))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    check(
        not unexpected, f"{p} does not match this model (e.g. {unexpected[:2]}); truncate the same way first"
    )
    model.requires_grad_(False)
    return model.eval()
