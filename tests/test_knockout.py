"""Knockout sweep logic and the attention-sink table math (tiny models and synthetic numbers, seconds)."""

from __future__ import annotations

import math

import pytest
import torch

import cramlens as cl
from analyses import knockout as ko
from analyses import sinks
from analyses.scoring import choice_sequences, residual, score_items
from analyses.tasks import Item
from cramlens.interventions import Knockout

ITEMS = [
    Item("a", "The cat sat on the", ("mat.", "moon and sang.", "dog", "it"), 0, "hellaswag"),
    Item("b", "A dog ran to", ("the park", "a wall of stone", "home", "sleep now"), 2, "hellaswag"),
]


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def model(request):
    return request.getfixturevalue(request.param)


def fake_crams(model, items=ITEMS, seed=0, layout=cl.Layout()):
    """Crams with random embeddings (the sweep logic does not care whether they reconstruct)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for it in items:
        seq = layout.sequence(model, model.to_tokens(it.context, prepend_bos=False)[0].tolist())
        out[it.id] = cl.CrammedSample(
            0,
            it.id,
            it.context,
            seq,
            torch.randn(1, model.cfg.d_model, generator=g),
            len(seq),
            0,
            0,
            0.0,
            0.0,
            1.0,
            model=model,
            layout=layout,
        )
    return out


def test_conditions_cover_k_0_to_L():
    conds = [c.name for c in ko.conditions(4, control_ks=[1, 4])]
    assert conds[:2] == ["base", "cram"]
    assert [c for c in conds if c.startswith("forward:")] == [f"forward:{k}" for k in range(1, 5)]
    assert [c for c in conds if c.startswith("reverse:")] == [f"reverse:{k}" for k in range(1, 5)]
    assert [c for c in conds if c.startswith("per_layer:")] == [f"per_layer:{k}" for k in range(4)]
    assert [c for c in conds if c.startswith("control_")] == [
        "control_cram",
        "control_forward:1",
        "control_forward:4",
        "control_per_layer:1",
    ]
    assert "control_cram" not in [c.name for c in ko.conditions(4, ["reverse"], control=False)]
    sub = ko.conditions(4, ["forward", "per_layer"], control=False, ks=[0, 2])
    assert [c.name for c in sub] == ["base", "cram", "forward:2", "per_layer:0", "per_layer:2"]
    assert sub[2] == ko.Condition("cram", Knockout("forward", 2))
    both = [c.name for c in ko.conditions(2, ["reverse"], control=False, masks=("text", "reference"))]
    assert both == ["base", "cram", "reverse:1", "reverse:2", "reverse:1@reference", "reverse:2@reference"]


@pytest.mark.parametrize(
    "name", ["base", "cram", "control_cram", "forward:3", "control_per_layer:2", "reverse:1@reference"]
)
def test_condition_names_parse_back_and_round_trip_through_dicts(name):
    c = ko.Condition.parse(name)
    assert c.name == name and ko.Condition.from_dict(c.to_dict()) == c
    if name == "forward:3":  # old on-disk rows carry only the name: the text mask
        assert c.knockout.mask == "text" and c.knockout.resolve(4) == [0, 1, 2]


def test_k_grid_flag_parses_all_auto_and_lists_and_rejects_garbage():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import knockout as script

    assert script._k_grid("all", 30) is None
    assert script._k_grid("auto", 30)[-2:] == [29, 30]
    assert script._k_grid("1,3", 30) == [1, 3]
    with pytest.raises(cl.CramlensError, match="comma list"):
        script._k_grid("1-3", 30)


def test_k0_equals_cram_and_the_scorer(model):
    crams = fake_crams(model)
    chunk = ko.make_chunk(model, ITEMS, crams)
    res = ko.sweep_chunk(model, chunk, ["base", "cram"], control_token=5)
    mem = torch.stack([crams[it.id].embedding for it in ITEMS])
    want = score_items(model, ITEMS, mem, ("context_ending",))
    base = score_items(model, ITEMS, None, ("context_ending",))
    for i, it in enumerate(ITEMS):
        row = want.nll["context_ending"][i]
        assert res["cram"][i]["pred"] == min(range(4), key=lambda j: row[j])
        brow = base.nll["context_ending"][i]
        assert res["base"][i]["pred"] == min(range(4), key=lambda j: brow[j])
        # teacher-forced accuracy of the crammed context, as cramlens measures it
        s = crams[it.id]
        tf = cl.teacher_forced_accuracy(model, s.embedding[None], [s.sequence])
        assert res["cram"][i]["tf"] == pytest.approx(float(tf[0]))


def test_full_forward_knockout_is_memory_independent(model):
    L = model.cfg.n_layers
    a, b = fake_crams(model, seed=0), fake_crams(model, seed=1)
    ra = ko.sweep_chunk(model, ko.make_chunk(model, ITEMS, a), [f"forward:{L}", f"reverse:{L}", "cram"], 5)
    rb = ko.sweep_chunk(model, ko.make_chunk(model, ITEMS, b), [f"forward:{L}", f"reverse:{L}", "cram"], 5)
    for cond in (f"forward:{L}", f"reverse:{L}"):
        for x, y in zip(ra[cond], rb[cond], strict=True):
            assert x["pred"] == y["pred"] and x["ce_ctx"] == pytest.approx(y["ce_ctx"], abs=1e-5)
    assert any(abs(x["ce_ctx"] - y["ce_ctx"]) > 1e-4 for x, y in zip(ra["cram"], rb["cram"], strict=True))


def test_full_knockout_equals_base_for_rotary_models(tiny_llama):
    """With relative (rotary) positions, a memory no text query can see leaves the text forward unchanged."""
    L = tiny_llama.cfg.n_layers
    res = ko.sweep_chunk(
        tiny_llama, ko.make_chunk(tiny_llama, ITEMS, fake_crams(tiny_llama)), ["base", f"forward:{L}"], 5
    )
    for x, y in zip(res["base"], res[f"forward:{L}"], strict=True):
        assert x["pred"] == y["pred"] and x["ce_ctx"] == pytest.approx(y["ce_ctx"], abs=1e-4)


@pytest.mark.parametrize("cond", ["reverse:1", "per_layer:1", "control_per_layer:1"])
def test_cached_start_layer_equals_the_full_knocked_out_forward(model, cond):
    crams = fake_crams(model)
    chunk = ko.make_chunk(model, ITEMS, crams)
    got = ko.sweep_chunk(model, chunk, [cond], control_token=5)[cond]
    hooks, start = ko.knockout_hooks(model, cond)
    assert start == 1
    mem = (
        chunk.memory if not cond.startswith("control") else model.W_E[5].expand(chunk.memory.shape[0], 1, -1)
    )
    from analyses.scoring import nll_at

    nll, ok = nll_at(model, residual(model, chunk.packed, mem, hooks), chunk.packed)
    want = ko._item_scores(chunk, chunk.packed, nll, ok)
    for x, y in zip(got, want, strict=True):
        assert x["pred"] == y["pred"] and x["tf"] == y["tf"]
        assert x["ce_ctx"] == pytest.approx(y["ce_ctx"], abs=1e-5)


def test_tf_rows_when_the_context_is_not_a_prefix(tiny_llama):
    crams = fake_crams(tiny_llama)
    crams["a"].sequence = crams["a"].sequence[:-1] + [7]  # break the prefix property
    chunk = ko.make_chunk(tiny_llama, ITEMS, crams)
    assert chunk.owner.count(-1) == 1 and len(chunk.packed.lengths) == 9
    seqs, _ = choice_sequences(tiny_llama, ITEMS[1])
    assert chunk.packed.lengths[5:] == [len(s) for s in seqs]


def test_kuratov_layout_scores_tf_from_the_second_token(tiny_llama):
    lay = cl.Layout(score_from="text")
    crams = fake_crams(tiny_llama, layout=lay)
    res = ko.sweep_chunk(tiny_llama, ko.make_chunk(tiny_llama, ITEMS, crams), ["cram"], 5)["cram"]
    for it, r in zip(ITEMS, res, strict=True):
        s = crams[it.id]
        tf = cl.teacher_forced_accuracy(tiny_llama, s.embedding[None], [s.sequence], lay)
        assert r["tf"] == pytest.approx(float(tf[0]))


# ----------------------------------------------------------------------------- attention mass and sinks
def test_attention_mass_counts_the_memory_row_only_when_asked(tiny_llama):
    crams = fake_crams(tiny_llama)
    mem = torch.stack([crams[it.id].embedding for it in ITEMS])
    seqs = [crams[it.id].sequence for it in ITEMS]
    with_row = ko.attention_mass(tiny_llama, mem, seqs, True)
    text = ko.attention_mass(tiny_llama, mem, seqs, False)
    n = torch.tensor([len(s) for s in seqs], dtype=torch.float32)
    torch.testing.assert_close(with_row, (1 + text * n) / (n + 1))  # the memory row attends to itself only


def test_sink_profile_is_the_mean_of_running_means(tiny_llama):
    seq = tiny_llama.to_tokens("one two three four five six", prepend_bos=False)[0].tolist()
    store: dict[int, torch.Tensor] = {}
    with cl.capture_attention_to(tiny_llama, store, key=0, query_start=1).applied(tiny_llama):
        tiny_llama(torch.tensor([seq]))
    prof = sinks.sink_profile(tiny_llama, seq, None, len(seq))
    for layer, a in store.items():
        a = a[0]
        want = sum(float(a[: s - 1].mean()) for s in range(2, len(seq) + 1)) / (len(seq) - 1)
        assert float(prof[layer]) == pytest.approx(100 * want, rel=1e-5)
    # truncation: A(q, 0) does not depend on later tokens, so a shorter s_max is a prefix computation
    short = sinks.sink_profile(tiny_llama, seq, None, 4)
    for layer, a in store.items():
        want = sum(float(a[0, : s - 1].mean()) for s in range(2, 5)) / 3
        assert float(short[layer]) == pytest.approx(100 * want, rel=1e-5)


def test_running_means_and_pearson():
    torch.testing.assert_close(
        sinks.running_means(torch.tensor([1.0, 3.0, 2.0])), torch.tensor([1.0, 2.0, 2.0])
    )
    assert sinks.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert sinks.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(sinks.pearson([1, 1, 1], [1, 2, 3]))


def test_sink_table_on_synthetic_profiles():
    comp = torch.tensor([[10.0, 20.0, 30.0], [20.0, 30.0, 40.0]])  # layer-means 20, 30
    orig = torch.tensor([[50.0, 60.0, 70.0], [60.0, 60.0, 60.0]])  # layer-means 60, 60
    t = sinks.sink_table({"compression": comp, "orig": orig})
    assert t["compression"]["mean"] == pytest.approx(25.0)
    assert t["compression"]["std"] == pytest.approx(math.sqrt(50.0))  # sample std of (20, 30)
    assert t["compression"]["diff"] == pytest.approx(-35.0)
    assert t["compression"]["corr"] == pytest.approx(1.0)  # mean profiles (15,25,35) vs (55,60,65)
    assert t["orig"]["diff"] == 0.0 and t["orig"]["corr"] == pytest.approx(1.0)


def test_summarize_sweep_and_curves():
    rows = [
        {"cond": "cram", "id": "a", "correct": True, "tf": 1.0, "ce_ctx": 0.1},
        {"cond": "cram", "id": "b", "correct": False, "tf": 1.0, "ce_ctx": 0.3},
        {"cond": "forward:1", "id": "a", "correct": True, "tf": 0.5, "ce_ctx": 1.0},
        {"cond": "forward:1", "id": "b", "correct": True, "tf": float("nan"), "ce_ctx": float("nan")},
    ]
    s = ko.summarize_sweep(rows)
    assert (
        s["cram"]["acc"] == 50.0
        and s["cram"]["tf_exact"] == 100.0
        and s["cram"]["ce_ctx"] == pytest.approx(0.2)
    )
    assert s["forward:1"]["acc"] == 100.0 and s["forward:1"]["tf"] == 0.5
    assert ko.curve(s, "forward", 2) == [(0, 50.0), (1, 100.0)]


def test_summary_carries_wilson_intervals_and_the_paired_test_against_the_cram():
    rows = [{"cond": "cram", "id": str(i), "correct": i < 9, "tf": 1.0, "ce_ctx": 0.1} for i in range(20)]
    # forward:1 loses 8 of the cram's right items and gains 1: +1/-8
    rows += [
        {"cond": "forward:1", "id": str(i), "correct": i in (0, 9), "tf": 0.5, "ce_ctx": 1.0}
        for i in range(20)
    ]
    rows += [
        {"cond": "base", "id": str(i), "correct": i < 9, "tf": float("nan"), "ce_ctx": 1.0} for i in range(20)
    ]
    s = ko.summarize_sweep(rows)
    assert s["forward:1"]["vs_cram"] == {"a_only": 8, "b_only": 1, "p": pytest.approx(20 / 512), "n": 20}
    assert s["base"]["vs_cram"]["p"] == 1.0 and "vs_cram" not in s["cram"]
    # Wilson score interval of 9/20 by its formula
    z, n, q = 1.959963984540054, 20, 9 / 20
    mid, half = (
        (q + z * z / (2 * n)) / (1 + z * z / n),
        z / (1 + z * z / n) * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)),
    )
    assert (s["cram"]["acc_lo"], s["cram"]["acc_hi"]) == pytest.approx(
        (100 * (mid - half), 100 * (mid + half))
    )
    assert s["cram"]["acc"] == 45.0 and s["cram"]["tf_ci"]["n"] == 20 and s["base"]["tf_ci"]["n"] == 0


def test_masks_in_names_the_masks_a_summary_holds():
    both = {c.name: {} for c in ko.conditions(2, masks=("text", "reference"))}
    assert ko.masks_in(both) == ["text", "reference"]
    assert ko.masks_in({c.name: {} for c in ko.conditions(2)}) == ["text"]
    assert ko.masks_in({c.name: {} for c in ko.conditions(2, masks=("reference",))}) == ["reference"]
    assert ko.masks_in({"base": {}, "cram": {}}) == ["text"]


@pytest.mark.integration
def test_smollm2_full_knockout_equals_base_and_sink_profile_runs(smollm2):
    """SmolLM2 (rotary, GQA 9/3): masking the memory in all 30 layers gives the memory-free forward."""
    item = Item(
        "i",
        "A man is sitting on a roof. he",
        ("is using wrap to wrap a pair of skis.", "starts pulling up roofing on a roof."),
        1,
        "hellaswag",
    )
    crams = fake_crams(smollm2, [item])
    L = smollm2.cfg.n_layers
    res = ko.sweep_chunk(smollm2, ko.make_chunk(smollm2, [item], crams), ["base", f"forward:{L}", "cram"], 5)
    assert res["base"][0]["pred"] == res[f"forward:{L}"][0]["pred"]
    assert res["base"][0]["ce_ctx"] == pytest.approx(res[f"forward:{L}"][0]["ce_ctx"], abs=1e-3)
    prof = sinks.sink_profile(smollm2, crams["i"].sequence, crams["i"].embedding, 8)
    assert prof.shape == (L,) and float(prof.min()) >= 0 and float(prof.max()) <= 100


def test_sink_table_script_runs_on_a_tiny_model(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import knockout as script

    args = [
        "--model",
        "tiny-llama",
        "--sink",
        "--no-sweep",
        "--sink-data",
        "builtin",
        "--sink-texts",
        "2",
        "--sink-len",
        "6",
        "--sink-steps",
        "3",
        "--sink-from",
        "full",
        "--out",
        str(tmp_path),
        "--figures",
        str(tmp_path / "f"),
    ]
    script.main(args)
    res = json.loads((tmp_path / "sink_tiny-llama.json").read_text())
    assert res["n"] == 2 and len(res["tf"]) == 2 and (tmp_path / "f" / "tiny-llama_sink.md").exists()
    with pytest.raises(cl.CramlensError, match="sink-converged-only"):  # 3 steps reconstruct nothing exactly
        script.main(args + ["--sink-converged-only", "--out", str(tmp_path / "b")])


def test_sink_table_reads_final_progressive_embeddings_by_default(tmp_path, tiny_llama):
    """The paper's protocol: each text's final progressive-stage embedding, on the prefix it reconstructs."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import knockout as script

    texts = cl.load_texts("builtin", tiny_llama.tokenizer, n_samples=3, seq_len=8)
    run = cl.progressive_cram(
        tiny_llama,
        texts,
        recipe="fast",
        batch_size=3,
        steps_per_stage=60,
        steps_per_sample=400,
        out=tmp_path / "prog",
    )
    usable = [s for s in run.samples if s.horizon >= 2]
    assert usable, "the tiny model should reconstruct at least two tokens of some text"
    args = [
        "--model",
        "tiny-llama",
        "--sink",
        "--no-sweep",
        "--sink-run",
        str(tmp_path / "prog"),
        "--out",
        str(tmp_path / "new"),  # not made by any cram: the table must create it
        "--figures",
        str(tmp_path / "f"),
    ]
    script.main(args)
    res = json.loads((tmp_path / "new" / "sink_tiny-llama.json").read_text())
    assert res["n"] == len(usable) and res["embeddings"] == ["progressive"]
    assert res["tf"] == [1.0] * len(usable)  # teacher forcing on the measured prefix (the horizon)
    assert res["s_max"] == min(
        s.horizon for s in usable
    )  # measured on the reconstructed prefix, not the text
