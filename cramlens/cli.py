"""Shared command-line plumbing for ``scripts/*.py``: common flags, one-line errors, model/text loading."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from .errors import CramlensError
from .layout import Layout
from .recipe import DEFAULT_PRESET, PRESETS, Recipe, get_recipe
from .spec import CramSpec

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_data() -> str:
    """``../shared/data/pg19`` beside the checkout when present, else the built-in documentation texts."""
    pg = SHARED_DATA / "pg19"
    return str(pg) if pg.exists() else "builtin"


def add_model_args(p: argparse.ArgumentParser, model: str = "smollm2-135m") -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=model,
        help="registry name (smollm2-135m, gemma-3-270m, tiny-llama, tiny-gpt2), "
        "a local Hugging Face directory, or a hub id (needs network)",
    )
    g.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available, else cpu)"
    )
    g.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    g.add_argument(
        "--no-fast",
        action="store_true",
        help="run TransformerLens's own forward (no fused weights / SDPA fast path; same results)",
    )
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_data_args(p: argparse.ArgumentParser, samples: int = 4, seq_len: int = 64) -> None:
    g = p.add_argument_group("texts")
    g.add_argument(
        "--data",
        default=default_data(),
        help="builtin (CPython docs), random-words, a .txt/.jsonl file or folder, or a hub data set "
        "(pg19, pg19_1k; needs network). Default: ../shared/data/pg19 when present, else builtin",
    )
    g.add_argument("--samples", type=int, default=samples, help="number of texts to cram")
    g.add_argument("--skip", type=int, default=0, help="skip the source's first N documents")
    g.add_argument("--seq-len", type=int, default=seq_len, help="tokens per text (BOS not counted)")
    g.add_argument(
        "--offset",
        default="start",
        choices=["start", "random"],
        help="which window of each document: its first tokens (paper) or a seeded random window",
    )


# --- options generated from dataclass fields -------------------------------------------------------------------
# A field becomes an option when its ``metadata`` has ``help``. Other keys, where the command line differs from the
# field: ``flag`` (default ``--field-name``), ``dest`` (the namespace attribute; default: the field's name),
# ``choices``, ``type`` (default: the annotation), ``const`` (a switch that sets this value; bool fields are switches
# to True), ``apply`` (``apply(base, value)`` → the field's value, e.g. ``--beta2`` → ``betas``) and ``group`` (the
# option group of the class the field belongs to, e.g. CramSpec's ``layout``, ``stages``, ``run``).


def option_fields(cls, group: str | None = None) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are command-line options (those of ``group`` when given)."""
    return [
        f
        for f in dataclasses.fields(cls)
        if "help" in f.metadata and (group is None or f.metadata.get("group") == group)
    ]


def option_flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def option_dest(f: dataclasses.Field) -> str:
    """Where the parsed value lands in the namespace: the field's name unless ``dest`` says otherwise."""
    return f.metadata.get("dest", f.name)


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def add_dataclass_args(g, cls, group: str | None = None, from_preset: bool = True) -> list[str]:
    """One option per field of ``cls`` with ``help`` metadata (see above), added to parser or group ``g``;
    returns their dests. ``from_preset``: the options default to ``None`` (the value comes from a preset or the
    dataclass, see :func:`values_from_args`); else to the field's default."""
    hints = typing.get_type_hints(cls)
    dests = []
    for f in option_fields(cls, group):
        m = f.metadata
        kw = dict(dest=option_dest(f), default=None if from_preset else _field_default(f), help=m["help"])
        if "const" in m or hints[f.name] is bool:
            kw.update(action="store_const", const=m.get("const", True))
        else:
            kw["type"] = m.get("type", hints[f.name])
            if "choices" in m:
                kw["choices"] = m["choices"]
            else:
                kw["metavar"] = option_flag(f).lstrip("-").replace("-", "_").upper()
        g.add_argument(option_flag(f), **kw)
        dests.append(kw["dest"])
    return dests


def values_from_args(a: argparse.Namespace, cls, base=None, group: str | None = None) -> dict:
    """The field values of ``cls`` the options in ``a`` give: options that are absent or ``None`` (not given)
    are left out, so they keep ``base``'s (or the dataclass's) value; ``apply`` metadata reads ``base``."""
    out = {}
    for f in option_fields(cls, group):
        v = getattr(a, option_dest(f), None)
        if v is not None:
            out[f.name] = f.metadata["apply"](base, v) if "apply" in f.metadata else v
    return out


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """``--recipe`` (the preset) and one option per :class:`~cramlens.recipe.Recipe` field, overriding it."""
    g = p.add_argument_group("optimisation (defaults come from --recipe)")
    g.add_argument(
        "--recipe",
        default=DEFAULT_PRESET,
        choices=sorted(PRESETS),
        help=f"named preset (default {DEFAULT_PRESET}; 'paper' is the paper's progressive recipe)",
    )
    add_dataclass_args(g, Recipe)


def add_layout_args(p: argparse.ArgumentParser) -> None:
    """The :class:`~cramlens.layout.Layout` options and the spec's parametrisation options."""
    g = p.add_argument_group("layout and parametrisation")
    add_dataclass_args(g, Layout)
    add_dataclass_args(g, CramSpec, group="layout", from_preset=False)


def add_stage_args(p: argparse.ArgumentParser):
    """The spec's stage schedule (progressive cramming); returns the group, for a script's own stage options."""
    g = p.add_argument_group("stages")
    add_dataclass_args(g, CramSpec, group="stages", from_preset=False)
    return g


def add_run_args(p: argparse.ArgumentParser, out: str) -> None:
    g = p.add_argument_group("run")
    add_dataclass_args(g, CramSpec, group="run", from_preset=False)
    g.add_argument("--out", default=out, help="run directory (results are written incrementally)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--no-progress", action="store_true", help="no live table (logs only)")


def add_workers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        default="auto",
        help="worker processes, each taking a shard of the samples (torchrun, one thread per core each): auto "
        "(default) = one per CPU core on a CPU (faster than one process with as many threads: "
        "benchmarks/bench_cores.py), 1 on a GPU; 1 = this process only (then --threads applies)",
    )


def became_workers(a: argparse.Namespace, script: str, argv: list[str] | None, n_samples: int) -> bool:
    """Under ``--workers N > 1``: run ``script`` again as N torchrun workers and return True once they have
    finished (the caller then returns; rank 0 has printed the report). False: go on in this process."""
    import torch

    from .distributed import run_as_workers, workers_for

    on_gpu = (a.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    overwrite = getattr(a, "overwrite", False)
    n = workers_for(a.workers, on_gpu, a.out, n_samples, a.resume, overwrite)
    if n <= 1:
        return False
    if overwrite and not a.resume and Path(a.out).exists():
        shutil.rmtree(a.out)  # before the launch: the ranks replace only their own rank-<r>/ directories
    code = run_as_workers(script, list(sys.argv[1:] if argv is None else argv), n)
    if code != 0:
        raise SystemExit(code)
    return True


def add_results_arg(p) -> None:
    """``--results DIR``: after a successful run, refresh that results/ folder's summary of it
    (:func:`analyses.results_export.refresh`, via :func:`refresh_results`)."""
    p.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="also refresh this results/ folder's summary of the run (the project's published results: "
        "--results results)",
    )


def refresh_results(a: argparse.Namespace, experiment: str, run_dir, name: str | None = None, log=print):
    """Refresh ``a.results`` (when given) with ``experiment``'s summary of ``run_dir``; returns the files."""
    if not getattr(a, "results", None):
        return []
    from analyses.results_export import refresh

    files = refresh(experiment, run_dir, a.results, name)
    log(f"results: refreshed {len(files)} file(s) of {experiment} under {a.results}/")
    return files


def recipe_from_args(a: argparse.Namespace) -> Recipe:
    """The ``--recipe`` preset with the recipe options that were given."""
    base = get_recipe(getattr(a, "recipe", None) or DEFAULT_PRESET)
    return base.with_(**values_from_args(a, Recipe, base))


def layout_from_args(a: argparse.Namespace) -> Layout:
    return Layout(**values_from_args(a, Layout, Layout()))


def spec_from_args(a: argparse.Namespace) -> CramSpec:
    """The :class:`~cramlens.spec.CramSpec` of the parsed options (the one place options become settings): the
    ``--recipe`` preset, then the options given; spec options the script does not have (e.g. the stage schedule of
    full cramming) keep the spec's defaults. ``--low-dim k`` (k >= 1) selects the low_dim parametrisation."""
    kw = values_from_args(a, CramSpec, CramSpec())
    kw.setdefault("parametrization", "low_dim" if kw.get("low_dim") else "direct")
    return CramSpec(recipe=recipe_from_args(a), layout=layout_from_args(a), **kw)


def load_model_from_args(a: argparse.Namespace, name: str | None = None):
    """The model of ``--model`` (or ``name``), ``--device``, ``--dtype``, ``--threads``; the one place that
    decides the fast path: on unless ``--no-fast``."""
    import torch

    from .fast import optimize
    from .models import load_model

    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per rank under torchrun / accelerate
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    model = load_model(name or a.model, device=device, dtype=a.dtype)
    return model if a.no_fast else optimize(model)


def load_model_and_texts(a: argparse.Namespace):
    from .texts import load_texts

    model = load_model_from_args(a)
    texts = load_texts(
        a.data,
        model.tokenizer,
        n_samples=a.samples,
        seq_len=a.seq_len,
        seed=a.seed,
        offset=a.offset,
        skip=a.skip,
    )
    return model, texts


def console() -> Console:
    """A rich console; piped to a file or log it is 160 columns wide, so tables are not truncated to 80."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def run_main(main: Callable[[], object]) -> None:
    """Run a script's main: bad input → one line on stderr and exit 2; Ctrl-C → exit 130 with a resume hint."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        main()
    except CramlensError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished stages are saved; rerun the same command with --resume", file=sys.stderr
        )
        sys.exit(130)


def elapsed(seconds: float) -> str:
    """``4 min 12 s`` / ``37 s``: wall time as a person reads it."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"
