"""The depth sweep (issue 9; REFERENCE C.8, D.10): crammed capacity of truncated-depth variants of a model.

Per :class:`Variant` (model, scheme, N; ``N=None`` is the full model) :func:`run_variant` truncates the base model
(:mod:`analyses.depth`), finetunes it briefly (:mod:`analyses.recovery_finetune`, cached in ``<variant>/finetune/``),
crams the same texts progressively and writes ``<root>/<model>/<variant>/result.json``; :func:`depth_sweep` runs
every variant (one base model in memory at a time) and :func:`collect_results` reads back every finished one.
Texts, run directories (``<root>/<model>/<variant>/<source>/``, shared with the capacity run) and the per-sample
numbers come from :mod:`analyses.capacity`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_lens import HookedTransformer

from cramlens.runs import atomic_write_text

from .capacity import cram_dir, cram_source, load_source, sample_capacity, source_label, summarise

if TYPE_CHECKING:
    from analyses.recovery_finetune import FinetuneConfig
    from cramlens.spec import CramSpec


@dataclass(frozen=True)
class Variant:
    model: str
    n: int | None  # None: the full model
    scheme: str = "first"
    finetune: bool = True

    @property
    def name(self) -> str:
        from analyses.depth import variant_name

        return variant_name(self.n, self.scheme)


def run_variant(
    base: HookedTransformer,
    v: Variant,
    texts: Sequence,
    source: str,
    root: str | Path,
    spec: CramSpec,
    ft_cfg: FinetuneConfig | None,
    log: Callable[[str], None] = print,
) -> dict:
    """Truncate ``base`` as ``v`` says, finetune (cached in ``<variant>/finetune``), cram ``texts`` with ``spec``'s
    recipe, batch size and seed; one result row."""
    from analyses.depth import truncate
    from analyses.recovery_finetune import finetune, validation_loss

    vdir = Path(root) / v.model / v.name
    t0 = time.process_time()
    model = base if v.n is None else truncate(base, v.n, v.scheme)
    ft = None
    if v.n is not None and v.finetune:
        ft = finetune(
            model,
            ft_cfg,
            out=vdir / "finetune",
            resume=True,
            progress=lambda s, loss: (
                (s % 50 == 0) and log(f"  {v.model} {v.name} finetune step {s}: loss {loss:.3f}")
            ),
        )
        log(
            f"  {v.model} {v.name} finetuned: val loss {ft.val_loss_before:.3f} -> {ft.val_loss_after:.3f} nats"
        )
    val_loss = None
    if ft is None and ft_cfg is not None:  # the same held-out windows, so unfinetuned rows are comparable
        val_loss = validation_loss(model, ft_cfg)
        log(f"  {v.model} {v.name} (not finetuned): val loss {val_loss:.3f} nats")
    t_ft = time.process_time() - t0
    out = cram_dir(root, v.model, v.name, source)
    run = cram_source(model, texts, out, spec.recipe, spec.batch_size, spec.seed)
    caps = sample_capacity(run, model.cfg.d_model, source_label(source), v.name)
    summ = summarise(caps, by="variant")[0]
    result = {
        "model": v.model,
        "variant": v.name,
        "scheme": v.scheme,
        "n": v.n,
        "layers": model.cfg.n_layers,
        "base_layers": base.cfg.n_layers,
        "d_model": model.cfg.d_model,
        "finetuned": ft is not None,
        "val_loss_before": ft.val_loss_before if ft else val_loss,
        "val_loss_after": ft.val_loss_after if ft else val_loss,
        "finetune_steps": ft.steps if ft else 0,
        "source": source_label(source),
        "horizons": run.horizons(),
        "samples": [asdict(c) for c in caps],
        **summ,
        "cpu_seconds_finetune": t_ft,
        "cpu_seconds_total": time.process_time() - t0,
        "recipe": run.config["settings"]["recipe"],
    }
    atomic_write_text(vdir / "result.json", json.dumps(result, indent=1, default=str))
    return result


def depth_sweep(
    variants: Sequence[Variant],
    source: str,
    n_samples: int,
    seq_len: int,
    spec: CramSpec,
    ft_cfg: FinetuneConfig | None,
    root: str | Path,
    load: Callable[[str], HookedTransformer] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Issue 9: every variant crams the same texts (chosen by the base model's tokenizer and ``spec.seed``) with
    ``spec``'s recipe and batch size; resumable per variant. ``ft_cfg``: the recovery finetune (its held-out
    windows also give the validation loss of variants that are not finetuned)."""
    from cramlens import load_model

    load = load or load_model
    results, cache = [], {}
    for v in variants:
        if v.model not in cache:
            cache.clear()  # one base model in memory at a time
            cache[v.model] = load(v.model)
        base = cache[v.model]
        texts = load_source(base, source, n_samples, seq_len, spec.seed)
        log(f"{v.model} {v.name}: start")
        r = run_variant(base, v, texts, source, root, spec, ft_cfg, log)
        log(
            f"{v.model} {v.name}: horizons {r['horizons']} mean {r['horizon_mean']:.1f} ({r['cpu_seconds_total']:.0f} CPU-s)"
        )
        results.append(r)
    return results


def collect_results(root: str | Path) -> list[dict]:
    """Every ``<root>/<model>/<variant>/result.json`` (finished variants of any sweep into ``root``)."""
    return [json.loads(p.read_text()) for p in sorted(Path(root).glob("*/*/result.json"))]
