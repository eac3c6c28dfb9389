"""What the recipe sweeps share: their command line, the model and texts, the chosen variants and layouts."""

from __future__ import annotations

import argparse

import cramlens as cl
from cramlens.cli import default_data
from cramlens.fast import optimize

LAYOUTS = {
    None: cl.Layout(),
    "bos_first": cl.Layout(bos=True, mem_first=False),  # [BOS][mem][x]: the memory off position 0
    "mem_bos": cl.Layout(bos=True),  # [mem][BOS][x]: the memory predicts BOS
    "kuratov": cl.Layout(score_from="text"),  # the first token is input only
}


def sweep_parser(doc: str, samples: int, seq_len: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default=default_data())
    p.add_argument("--samples", type=int, default=samples)
    p.add_argument("--seq-len", type=int, default=seq_len)
    p.add_argument("--only", default=None, help="comma-separated variant indices")
    return p


def model_and_texts(a: argparse.Namespace):
    model = optimize(cl.load_model(a.model))
    return model, cl.load_texts(a.data, model.tokenizer, a.samples, a.seq_len)


def chosen(variants: dict[str, dict], only: str | None) -> list[tuple[str, dict, cl.Layout]]:
    """``(name, recipe overrides, layout)`` of the selected variants (all when ``only`` is None)."""
    items = list(variants.items())
    if only:
        items = [items[int(i)] for i in only.split(",")]
    out = []
    for name, v in items:
        v = dict(v)
        out.append((name, v, LAYOUTS[v.pop("layout", None)]))
    return out
