"""Interventions as data (round-trips, reprs), filter names in hook sets, and the two knockout masks (tiny models)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import cramlens as cl
from cramlens.hooks import capture, forward_knockout, inject, knockout, reverse_knockout
from cramlens.hookset import HookSet
from cramlens.interventions import (
    Capture,
    CaptureAttention,
    Inject,
    Knockout,
    hooks_of,
    intervention_from_dict,
    interventions_to_config,
)


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def model(request):
    return request.getfixturevalue(request.param)


def _ids(model, n: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.cfg.d_vocab, (1, n), generator=g)


def _mem(model, m: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, m, model.cfg.d_model, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- data: repr, to_dict, from_dict
def test_interventions_round_trip_through_json_and_print_readably():
    mem = torch.zeros(1, 2, 8)
    items = [
        Knockout("forward", 3),
        Knockout("reverse", 2, mask="reference"),
        Knockout("per_layer", 1, keys=(0, 1)),
        Knockout("layers", (3, 1)),
        Inject(mem, (4, 5), ref="embeddings.safetensors#0"),
        Capture(["hook_embed", "blocks.0.hook_resid_post"]),
        CaptureAttention(key=0, query_start=0),
    ]
    back = [
        intervention_from_dict(d, {"embeddings.safetensors#0": mem})
        for d in json.loads(json.dumps(interventions_to_config(items)))
    ]
    assert back == items
    assert back[4].embedding is mem  # the tensor comes back from the mapping, not from the config
    assert items[4].to_dict() == {"type": "inject", "positions": [4, 5], "ref": "embeddings.safetensors#0"}
    assert repr(items[1]) == "Knockout(direction='reverse', layers=2, mask='reference', keys=(0,))"
    assert repr(items[4]) == "Inject(1x2x8, positions=[4, 5], ref='embeddings.safetensors#0')"
    assert items[3].layers == (1, 3) and items[3].name == "layers:1,3"
    assert [Knockout.parse(k.name) for k in items[:4]] == items[:4]


def test_inject_without_its_tensor_says_how_to_give_it(tiny_llama):
    x = intervention_from_dict({"type": "inject", "positions": [0], "ref": "emb#3"})
    with pytest.raises(cl.CramlensError, match="tensors="):
        x.hooks(tiny_llama)


@pytest.mark.parametrize(
    ("bad", "msg"),
    [
        (lambda m: Knockout("forward", m.cfg.n_layers + 1).hooks(m), "k must be in 0..2"),
        (lambda m: Knockout("layers", (0, 5)).hooks(m), r"layers must be in 0..1, got \[0, 5\]"),
        (lambda m: Knockout("sideways", 1), "direction 'sideways'"),
        (lambda m: Knockout("forward", 1, mask="all"), "mask 'all'"),
        (lambda m: Knockout.parse("forward:x"), "expected e.g."),
        (lambda m: intervention_from_dict({"type": "patch"}), "intervention type 'patch'"),
    ],
)
def test_bad_interventions_raise_one_clear_error(tiny_llama, bad, msg):
    assert tiny_llama.cfg.n_layers == 2
    with pytest.raises(cl.CramlensError, match=msg):
        bad(tiny_llama)


def test_builders_are_thin_constructors_over_the_dataclasses(model):
    ids, mem = _ids(model), _mem(model)
    L = model.cfg.n_layers
    pairs = [
        (forward_knockout(model, L), Knockout("forward", L)),
        (reverse_knockout(model, 1), Knockout("reverse", 1)),
        (knockout(model, [1], mask="reference"), Knockout("layers", (1,), "reference")),
    ]
    for built, data in pairs:
        assert built.hook_names == data.hooks(model).hook_names
        a = model.run_with_hooks(ids, fwd_hooks=list(inject(mem) + built))
        b = model.run_with_hooks(ids, fwd_hooks=list(hooks_of([Inject(mem), data], model)))
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- filter names
def test_hookset_filter_names_resolve_against_the_model(model):
    ids = _ids(model)
    seen: list[str] = []

    def is_resid_post(name: str) -> bool:
        return name.endswith("hook_resid_post")

    def note(act, hook):
        seen.append(hook.name)

    hs = HookSet(((is_resid_post, note), ("hook_embed", note)), "filters")
    want = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    assert hs.names(model) == (*want, "hook_embed")
    assert "<filter is_resid_post>" in repr(hs)
    model.run_with_hooks(ids, fwd_hooks=list(hs))  # TL resolves the filter itself
    assert sorted(seen) == sorted(["hook_embed", *want])
    seen.clear()
    with hs.applied(model):
        model(ids)
    with model.hooks(fwd_hooks=list(hs)):
        model(ids)
    assert sorted(seen) == sorted(2 * ["hook_embed", *want])
    model(ids)  # the contexts removed their hooks
    assert len(seen) == 2 * (len(want) + 1)


def test_filter_knockout_equals_the_named_one(tiny_llama):
    ids, mem = _ids(tiny_llama), _mem(tiny_llama)
    (_, fn), *_ = Knockout("per_layer", 1).hooks(tiny_llama)
    hs = HookSet(((lambda n: n == "blocks.1.attn.hook_attn_scores", fn),))
    with (inject(mem) + hs).applied(tiny_llama):
        a = tiny_llama(ids)
    b = tiny_llama.run_with_hooks(ids, fwd_hooks=list(inject(mem) + knockout(tiny_llama, [1])))
    assert torch.equal(a, b)


def test_unknown_hook_names_and_empty_filters_are_errors(tiny_llama):
    with pytest.raises(cl.CramlensError, match="'blocks.9.hook_x' is not in this model"):
        capture("blocks.9.hook_x", {}).names(tiny_llama)
    with pytest.raises(cl.CramlensError, match="matches no hook point"):
        HookSet(((lambda n: False, lambda a, hook: None),)).resolve(tiny_llama)


# ----------------------------------------------------------------------------- the two masks
def _run(model, ids, mem, ko: HookSet) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    store: dict[str, torch.Tensor] = {}
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.cfg.n_layers)]
    logits = model.run_with_hooks(ids, fwd_hooks=list(inject(mem) + ko + capture(names, store)))
    return logits, store


def hf_style_mask(keys: list[int]):
    """Hand-written HF-style 4D additive mask: causal minimum, memory columns replaced with the minimum, every row."""

    def hook_fn(scores, hook):
        q, k = scores.shape[-2:]
        neg = torch.finfo(scores.dtype).min
        mask = torch.zeros(1, 1, q, k)
        mask[..., torch.ones(q, k, dtype=torch.bool).triu(1)] = neg
        mask[..., keys] = neg
        raw = scores.masked_fill(
            torch.isinf(scores), 0.0
        )  # undo TL's -inf causal mask: HF adds its own minimum
        return (raw + mask).clamp(min=neg)

    return hook_fn


@pytest.mark.parametrize("m", [1, 2])
def test_reference_mask_equals_a_hand_written_hf_mask(model, m):
    ids, mem = _ids(model, 8), _mem(model, m)
    keys = list(range(m))
    hf = HookSet(tuple((f"blocks.{i}.attn.hook_attn_scores", hf_style_mask(keys)) for i in [0]))
    want, wp = _run(model, ids, mem, hf)
    got, gp = _run(model, ids, mem, knockout(model, [0], keys=keys, mask="reference"))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    p = gp["blocks.0.attn.hook_pattern"][0]  # [head, q, k]
    torch.testing.assert_close(p[:, :m], torch.full_like(p[:, :m], 1 / ids.shape[1]))  # memory rows: uniform
    assert float(p[:, m:, :m].abs().max()) == 0.0  # text rows: nothing on the memory
    torch.testing.assert_close(p, wp["blocks.0.attn.hook_pattern"][0])


def test_text_mask_keeps_the_memory_row_and_all_rows_is_the_same(tiny_llama):
    """With TL's -inf causal mask, the dtype minimum on the memory's own key leaves that row attending to itself."""
    ids, mem = _ids(tiny_llama), _mem(tiny_llama)
    _, pat = _run(tiny_llama, ids, mem, knockout(tiny_llama, [0]))
    p = pat["blocks.0.attn.hook_pattern"][0]
    assert torch.equal(p[:, 0, 0], torch.ones_like(p[:, 0, 0])) and float(p[:, 1:, 0].abs().max()) == 0.0

    def every_row(scores, hook):  # what the old queries="all" did
        scores = scores.clone()
        scores[..., 0] = torch.finfo(scores.dtype).min
        return scores

    all_rows = HookSet((("blocks.0.attn.hook_attn_scores", every_row),))
    assert torch.equal(
        _run(tiny_llama, ids, mem, all_rows)[0], _run(tiny_llama, ids, mem, knockout(tiny_llama, [0]))[0]
    )


def test_masks_agree_where_no_unmasked_layer_follows_and_differ_otherwise(model):
    """GQA included (tiny-llama has 4 query heads on 2 key/value heads)."""
    ids, mem = _ids(model, 9), _mem(model)
    L = model.cfg.n_layers

    def text_logits(ko: Knockout) -> torch.Tensor:
        return _run(model, ids, mem, ko.hooks(model))[0][0, 1:]  # the text positions

    for ko in (
        Knockout("reverse", 1),
        Knockout("reverse", L),
        Knockout("forward", L),
        Knockout("per_layer", L - 1),
    ):
        ref = Knockout(ko.direction, ko.layers, "reference")
        torch.testing.assert_close(text_logits(ko), text_logits(ref), rtol=0, atol=1e-5)
    for ko in (Knockout("forward", 1), Knockout("per_layer", 0)):
        ref = Knockout(ko.direction, ko.layers, "reference")
        assert float((text_logits(ko) - text_logits(ref)).abs().max()) > 1e-3


def test_tiny_llama_uses_grouped_query_attention(tiny_llama):
    assert (
        tiny_llama.cfg.n_key_value_heads is not None
        and tiny_llama.cfg.n_key_value_heads < tiny_llama.cfg.n_heads
    )


# ----------------------------------------------------------------------------- the knockout script's config
def test_knockout_config_holds_conditions_as_data(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import knockout as script

    from analyses import knockout as ko

    a = script.parse(["--model", "tiny-llama", "--mask", "both", "--out", str(tmp_path)])
    conds = ko.conditions(2, ["forward"], control=False, masks=("text", "reference"))
    script.write_config(tmp_path / "config.json", a, conds)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["conditions"][2]["knockout"] == {
        "type": "knockout",
        "direction": "forward",
        "layers": 1,
        "mask": "text",
        "keys": [0],
    }
    assert "direction" not in cfg["settings"] and cfg["settings"]["items"] == 64
    assert script.read_conditions(tmp_path / "config.json") == conds
    with pytest.raises(cl.CramlensError, match="--worker"):
        script._shard("2/2", tmp_path, 4)
    with script._shard("1/2", tmp_path, 5) as sh:
        assert (sh.rank, sh.world, sh.select(list(range(5)))) == (1, 2, [3, 4])
