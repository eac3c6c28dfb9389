"""cramlens: token cramming on TransformerLens hooks.

import cramlens as cl
model = cl.optimize(cl.load_model("smollm2-135m"))   # fused weights + SDPA where no hook looks
texts = cl.load_texts("builtin", model.tokenizer, n_samples=2, seq_len=32)
run = cl.progressive_cram(model, texts)
run[0].generate()
"""

import warnings

# TransformerLens 3.9 flags HookedTransformer as deprecated in favour of TransformerBridge; cramlens is built on
# HookedTransformer on purpose (the brief pins the 3.9 line), so the warning is noise for our users.
warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
warnings.filterwarnings("ignore", message=".*index_reduce.*")

from .cramming import cram, progressive_cram  # noqa: E402
from .errors import CramlensError  # noqa: E402
from .fast import optimize  # noqa: E402
from .hooks import (  # noqa: E402
    HookSet,
    capture,
    capture_attention_to,
    forward_knockout,
    inject,
    knockout,
    per_layer_knockout,
    reverse_knockout,
)
from .layout import Layout  # noqa: E402
from .loading_runs import load_run, load_trajectories  # noqa: E402
from .metrics import greedy_decode, greedy_reconstruction, surprisal_bits, teacher_forced_accuracy  # noqa: E402
from .models import available_models, load_model  # noqa: E402
from .prepare import prepare_texts  # noqa: E402
from .recipe import PRESETS, Recipe, get_recipe  # noqa: E402
from .results import CrammedSample, CramRun  # noqa: E402
from .rows import SampleSummary, StageRow, summarise_rows  # noqa: E402
from .spec import CramSpec  # noqa: E402
from .texts import TextSample, available_sources, load_texts  # noqa: E402

__all__ = [
    "CramRun",
    "CramSpec",
    "SampleSummary",
    "StageRow",
    "summarise_rows",
    "CrammedSample",
    "CramlensError",
    "HookSet",
    "Layout",
    "PRESETS",
    "Recipe",
    "capture",
    "capture_attention_to",
    "cram",
    "optimize",
    "forward_knockout",
    "get_recipe",
    "greedy_decode",
    "greedy_reconstruction",
    "inject",
    "knockout",
    "load_run",
    "load_trajectories",
    "per_layer_knockout",
    "prepare_texts",
    "progressive_cram",
    "reverse_knockout",
    "surprisal_bits",
    "teacher_forced_accuracy",
    "load_model",
    "available_models",
    "load_texts",
    "available_sources",
    "TextSample",
]
__version__ = "0.1.0"
