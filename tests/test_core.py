"""Unit tests of the cramming core on tiny random HookedTransformers (Llama-style with GQA, GPT-2 style)."""

from __future__ import annotations

import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import cramlens as cl
from cramlens.engine import CramLoop
from cramlens.forward import score, target_logits
from cramlens.layout import Layout, build_batch
from cramlens.optim import BatchedAdamW, Schedule
from cramlens.params import Memory, make_memory
from cramlens.recipe import Recipe


def tiny(kind: str, bos: bool) -> HookedTransformer:
    common = dict(
        n_layers=2, d_model=32, d_head=8, n_heads=4, d_vocab=97, n_ctx=96, seed=0, default_prepend_bos=bos
    )
    if kind == "llama":
        cfg = HookedTransformerConfig(
            **common,
            n_key_value_heads=2,
            d_mlp=64,
            act_fn="silu",
            normalization_type="RMS",
            positional_embedding_type="rotary",
            gated_mlp=True,
        )
    else:
        cfg = HookedTransformerConfig(**common, d_mlp=64, act_fn="gelu_new", normalization_type="LN")
    model = HookedTransformer(cfg)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def llama():
    return tiny("llama", bos=False)


@pytest.fixture(scope="module")
def gpt2():
    return tiny("gpt2", bos=False)


def seqs(n: int, length: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 97, (length,), generator=g).tolist() for _ in range(n)]


FAST = Recipe(warmup=0, steps_per_stage=150, steps_per_sample=1500)


# ----------------------------------------------------------------------------- hook sets and injection
def test_hookset_composes_and_reprs(llama):
    a = cl.inject(torch.zeros(1, 1, 32))
    b = cl.forward_knockout(llama, 2)
    both = a + b
    assert len(both) == len(a) + len(b) == 3
    assert both.hook_names[0] == "hook_embed"
    assert "inject" in repr(both) and "knockout" in repr(both)
    assert list(both) == list(a.pairs + b.pairs)


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_injecting_the_token_embeddings_reproduces_the_plain_forward(kind, m):
    model = tiny(kind, bos=False)
    ids = torch.tensor([seqs(1, 12)[0]])
    plain = model(ids)
    mem = model.embed(ids[:, :m]).clone()
    hooked = model.run_with_hooks(ids, fwd_hooks=list(cl.inject(mem)))
    assert torch.equal(plain, hooked)
    other = model.run_with_hooks(ids, fwd_hooks=list(cl.inject(mem + 1.0)))
    assert not torch.allclose(plain, other)


def test_gradients_reach_only_the_memory(llama):
    memory = make_memory(llama, 2, 1, "random0.02", seed=0)
    batch = build_batch(llama, seqs(2, 8), [8, 8], Layout())
    sc = score(target_logits(llama, memory.materialize(), batch), batch)
    sc.loss.sum().backward()
    emb = memory.per_sample["embedding"]
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in llama.parameters())


def test_layout_scoring_positions_with_and_without_bos():
    model = tiny("gpt2", bos=True)
    model.tokenizer = type("T", (), {"bos_token_id": 5})()
    x = [11, 12, 13]
    lay = Layout(n_mem=2)
    seq = lay.sequence(model, x)
    assert seq == [5, 11, 12, 13]
    b = build_batch(model, [seq], [4], lay)
    assert b.input_ids[0].tolist()[2:] == [5, 11, 12]  # last target never an input
    assert b.t_pos.tolist() == [1, 2, 3, 4] and b.t_ids.tolist() == seq
    kur = build_batch(model, [seq], [4], Layout(n_mem=2, score_from="text"))
    assert kur.t_ids.tolist() == seq[1:] and kur.t_pos.tolist() == [2, 3, 4]
    nob = Layout(n_mem=1, bos=False)
    assert nob.sequence(model, x) == x
    ctrl = Layout(n_mem=1, mem_first=False)
    bc = build_batch(model, [ctrl.sequence(model, x)], [3], ctrl)
    assert bc.input_ids[0].tolist()[0] == 5 and bc.mem_positions == [1] and bc.t_pos.tolist() == [1, 2, 3]


# ----------------------------------------------------------------------------- optimiser
def test_batched_adamw_matches_torch_adamw_with_hf_schedule():
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    torch.manual_seed(0)
    x0 = torch.randn(3, 1, 16)
    targets = torch.randn(3, 1, 16)
    sched = Schedule(lr=0.1, min_lr=1e-3, warmup=5, total=40)
    mine = x0.clone().requires_grad_(True)
    opt = BatchedAdamW([mine], sched, betas=(0.9, 0.9), weight_decay=0.01)
    ref = [x0[j].clone().requires_grad_(True) for j in range(3)]
    topts = [torch.optim.AdamW([r], lr=0.1, betas=(0.9, 0.9), weight_decay=0.01) for r in ref]
    scheds = [get_cosine_with_min_lr_schedule_with_warmup(o, 5, 40, min_lr=1e-3) for o in topts]
    active = torch.tensor([True, True, False])  # sample 2 is "converged": must not move at all
    for _ in range(30):
        ((mine - targets) ** 2).sum().backward()
        opt.step(active)
        opt.zero_grad()
        for j in range(2):
            ((ref[j] - targets[j]) ** 2).sum().backward()
            topts[j].step()
            scheds[j].step()
            topts[j].zero_grad()
    for j in range(2):
        torch.testing.assert_close(mine[j].detach(), ref[j].detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(mine[2].detach(), x0[2])
    assert opt.steps.tolist() == [30, 30, 0]


# ----------------------------------------------------------------------------- parametrisations
def test_low_dim_with_identity_projection_equals_direct(llama):
    d = llama.cfg.d_model
    direct = make_memory(llama, 2, 1, "random0.02", seed=3)
    z = direct.per_sample["embedding"].detach().clone().requires_grad_(True)
    W = torch.eye(d).expand(2, d, d).clone().requires_grad_(True)
    b = torch.zeros(2, d, requires_grad=True)
    low = Memory("low_dim", {"z": z, "W": W, "b": b})
    assert torch.equal(low.materialize(), direct.materialize())
    batch = build_batch(llama, seqs(2, 10), [10, 10], Layout())
    for mem in (direct, low):
        score(target_logits(llama, mem.materialize(), batch), batch).loss.sum().backward()
    torch.testing.assert_close(z.grad, direct.per_sample["embedding"].grad)


def test_low_dim_cramming_runs_and_reconstructs(llama):
    run = cl.progressive_cram(llama, seqs(1, 6), recipe=FAST, parametrization="low_dim", low_dim=8)
    assert run[0].horizon >= 2 and run[0].greedy_exact
    assert run.rows[0]["coefficients"].shape == (1, 8)


def test_init_strategies_are_seeded_per_sample(llama):
    a = make_memory(llama, 2, 1, "random0.02", seed=1, indices=[0, 1]).materialize()
    b = make_memory(llama, 1, 1, "random0.02", seed=1, indices=[1]).materialize()
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    assert 0 <= float(a.min()) and float(a.max()) < 0.02
    n = make_memory(llama, 1, 2, "normal0.5", seed=1).materialize()
    assert n.shape == (1, 2, 32) and float(n.min()) < 0
    with pytest.raises(cl.CramlensError, match="unknown init"):
        make_memory(llama, 1, 1, "gaussian", seed=1)


# ----------------------------------------------------------------------------- full cramming
def test_full_cramming_reaches_exact_reconstruction_and_freezes_converged(llama):
    texts = seqs(2, 3, seed=5)
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    class Spy:
        def start_batch(self, *a):
            pass

        def update(self, loop, info, group, new):
            emb = loop.memory.materialize().detach().clone()
            for j in (0, 1):
                if int(loop.state.status[j]) != 0:
                    seen[j].append(emb[j])

    run = cl.cram(llama, texts, recipe=FAST, batch_size=2, max_steps=800, progress=Spy())
    assert [s.horizon for s in run] == [3, 3]
    assert all(s.greedy_exact for s in run)
    assert all(s.accuracy_final == 1.0 for s in run)
    # a sample that finished first never changes while its batch companion continues
    first = min((0, 1), key=lambda j: run[j].steps)
    assert len(seen[first]) >= 2
    assert all(torch.equal(seen[first][0], e) for e in seen[first])
    assert torch.equal(seen[first][0], run[first].embedding)


def test_nan_loss_stops_only_that_sample(llama):
    texts = seqs(2, 2, seed=5)
    memory = make_memory(llama, 2, 1, "random0.02", seed=0)
    with torch.no_grad():
        memory.per_sample["embedding"][1] = float("nan")
    rows = []
    CramLoop(llama, texts, memory, FAST, min_len=2).run(on_stage=rows.append)
    bad = [r for r in rows if r.sample == 1]
    assert len(bad) == 1 and bad[0].reason == "nan_loss"
    good = [r for r in rows if r.sample == 0]
    assert len(good) == 1 and good[0].converged
    alone = []
    CramLoop(llama, texts[:1], make_memory(llama, 1, 1, "random0.02", seed=0), FAST, min_len=2).run(
        on_stage=alone.append
    )
    assert alone[0].steps_taken == good[0].steps_taken  # the NaN companion leaked nothing


# ----------------------------------------------------------------------------- progressive cramming
def test_progressive_warm_start_carries_embedding_moments_and_schedule(llama):
    memory = make_memory(llama, 1, 1, "random0.02", seed=0)
    loop = CramLoop(llama, seqs(1, 6), memory, FAST)
    records = []
    while not loop.done():
        before = len(records)
        steps_before = loop.opt.steps.clone()
        m_before = loop.opt.exp_avg[0].clone()
        loop.iterate(records.append)
        if len(records) > before and records[-1].converged and not loop.done():
            rec = records[-1]
            # the next stage starts from exactly the passing embedding, with moments and LR position kept
            assert torch.equal(loop.memory.materialize().detach()[0], rec.embedding)
            assert torch.equal(loop.opt.exp_avg[0], m_before)
            assert torch.equal(loop.opt.steps, steps_before) and int(steps_before[0]) == rec.steps_taken
    lens = [r.stage_seq_len for r in records]
    assert lens == list(range(1, len(lens) + 1))
    assert records[-1].steps_taken >= records[0].steps_taken


def test_batch_companions_do_not_change_a_sample(llama):
    target = seqs(1, 10, seed=11)
    others = [seqs(1, n, seed=20 + n)[0] for n in (4, 7, 12)]
    alone = cl.progressive_cram(llama, target, recipe=FAST, batch_size=1, seed=0, check_greedy=False)
    together = cl.progressive_cram(
        llama, target + others, recipe=FAST, batch_size=4, seed=0, check_greedy=False
    )
    a, b = alone.trajectory(0), together.trajectory(0)
    assert [(r["stage_seq_len"], r["steps_taken"], r["converged"]) for r in a] == [
        (r["stage_seq_len"], r["steps_taken"], r["converged"]) for r in b
    ]
    for ra, rb in zip(a, b, strict=True):
        rel = float((ra["embedding"] - rb["embedding"]).norm() / ra["embedding"].norm())
        # passing stages agree to rounding; a failing stage's hundreds of Adam steps may amplify it (≈1e-3)
        assert rel < (1e-5 if ra["converged"] else 1e-2), (ra["stage_seq_len"], rel)


def test_horizon_prefix_greedy_decodes_exactly(llama):
    run = cl.progressive_cram(llama, seqs(3, 12, seed=2), recipe=FAST, batch_size=3)
    assert all(s.horizon >= 2 for s in run)
    assert all(s.greedy_exact for s in run), [repr(s) for s in run]
    for s in run:
        assert s.generate(as_text=False) == s.sequence[: s.horizon]
        assert s.accuracy() == 1.0


def test_information_gain_is_hlm_minus_hcomp(llama):
    run = cl.progressive_cram(llama, seqs(1, 8, seed=4), recipe=FAST)
    s = run[0]
    surpr = cl.surprisal_bits(llama, s.sequence)
    for r in run.trajectory(0):
        L = r["stage_seq_len"]
        assert r["h_lm_bits"] == pytest.approx(float(torch.nansum(surpr[1:L])), rel=1e-5, abs=1e-5)
        assert r["information_gain_bits"] == pytest.approx(r["h_lm_bits"] - r["h_comp_bits"], abs=1e-4)
        if L > 1:
            assert r["new_token_surprisal_bits"] == pytest.approx(float(surpr[L - 1]), rel=1e-5)


def test_geometric_schedule_finds_a_horizon_near_linear(llama):
    texts = seqs(2, 16, seed=8)
    lin = cl.progressive_cram(llama, texts, recipe=FAST, batch_size=2)
    geo = cl.progressive_cram(llama, texts, recipe=FAST, batch_size=2, schedule="geometric")
    lens0 = [r["stage_seq_len"] for r in geo.trajectory(0)]
    assert lens0[:3] == [1, 2, 4]
    for a, b in zip(lin, geo, strict=True):
        assert b.greedy_exact and abs(a.horizon - b.horizon) <= max(3, a.horizon // 2)


# ----------------------------------------------------------------------------- run directories
class Interrupt:
    def __init__(self, after: int):
        self.after, self.n = after, 0

    def start_batch(self, *a):
        pass

    def update(self, *a):
        self.n += 1
        if self.n == self.after:
            raise KeyboardInterrupt


def test_resume_after_interrupt_mid_stage_equals_uninterrupted(llama, tmp_path):
    texts = seqs(3, 10, seed=9)
    ref = cl.progressive_cram(llama, texts, recipe=FAST, batch_size=2, out=tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        cl.progressive_cram(
            llama, texts, recipe=FAST, batch_size=2, out=tmp_path / "run", progress=Interrupt(137)
        )
    partial = cl.runs.read_rows(tmp_path / "run")
    assert 0 < len(partial) < len(ref.rows)
    res = cl.progressive_cram(llama, texts, recipe=FAST, batch_size=2, out=tmp_path / "run", resume=True)
    assert res.horizons() == ref.horizons()
    key = lambda r: (r["sample_id"], r["stage_index"])  # noqa: E731
    got, want = sorted(res.rows, key=key), sorted(ref.rows, key=key)
    assert [(r["stage_seq_len"], r["steps_taken"]) for r in got] == [
        (r["stage_seq_len"], r["steps_taken"]) for r in want
    ]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a["embedding"], b["embedding"])
    loaded = cl.load_run(tmp_path / "run", model=llama)
    assert loaded.horizons() == ref.horizons()
    assert loaded[0].generate(as_text=False) == ref[0].sequence[: ref[0].horizon]
    import datasets

    table = datasets.load_from_disk(str(tmp_path / "run" / "table"))
    for field in (
        "sample_id",
        "stage_index",
        "stage_seq_len",
        "text",
        "embedding",
        "final_convergence",
        "steps_taken",
        "information_gain_bits",
    ):
        assert field in table.column_names
    assert (tmp_path / "run" / "report.md").read_text().startswith("# cramlens progressive")


def test_run_directory_refuses_clobbering_and_mismatched_resume(llama, tmp_path):
    texts = seqs(1, 3)
    first = cl.cram(llama, texts, recipe=FAST, out=tmp_path / "r")
    with pytest.raises(cl.CramlensError, match="already holds a run"):
        cl.cram(llama, texts, recipe=FAST, out=tmp_path / "r")
    with pytest.raises(cl.CramlensError, match="settings differ"):
        cl.cram(llama, texts, recipe=FAST.with_(lr=0.5), out=tmp_path / "r", resume=True)
    again = cl.cram(llama, texts, recipe=FAST, out=tmp_path / "r", resume=True)  # finished: nothing to redo
    assert again.horizons() == first.horizons() and again.rows == [] or len(again.rows) == len(first.rows)


def test_torn_last_row_is_ignored(tmp_path, llama):
    cl.cram(llama, seqs(2, 3), recipe=FAST, batch_size=2, out=tmp_path / "r")
    with open(tmp_path / "r" / "rows.jsonl", "a") as f:
        f.write('{"sample_id": 9, "stage')
    assert len(cl.runs.read_rows(tmp_path / "r")) == 2


def test_bad_inputs_give_one_line_errors(llama):
    with pytest.raises(cl.CramlensError, match="no texts"):
        cl.progressive_cram(llama, [])
    with pytest.raises(cl.CramlensError, match="empty"):
        cl.progressive_cram(llama, [[]])
    with pytest.raises(cl.CramlensError, match="context"):
        cl.progressive_cram(llama, seqs(1, 200))
    with pytest.raises(cl.CramlensError, match="threshold"):
        Recipe(threshold=1.5)
    with pytest.raises(cl.CramlensError, match="unknown recipe"):
        cl.get_recipe("papr")
    with pytest.raises(cl.CramlensError, match="unknown recipe setting.*max_steps"):
        cl.progressive_cram(llama, seqs(1, 4), max_steps=10)  # the library name is steps_per_sample
    with pytest.raises(cl.CramlensError, match="one length"):
        cl.cram(llama, [[1, 2, 3], [1, 2]])
    with pytest.raises(cl.CramlensError, match="min-len 2"):
        cl.progressive_cram(llama, seqs(1, 4), layout=Layout(score_from="text"))


# ----------------------------------------------------------------------------- knockout hook sets
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_knockout_of_all_layers_makes_text_positions_independent_of_memory(kind):
    model = tiny(kind, bos=False)
    ids = torch.tensor([[0] + seqs(1, 9)[0]])
    ko = cl.knockout(model, range(model.cfg.n_layers))
    outs = []
    for seed in (0, 1):
        mem = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(seed))
        outs.append(model.run_with_hooks(ids, fwd_hooks=list(cl.inject(mem) + ko))[0, 1:])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    plain = [
        model.run_with_hooks(ids, fwd_hooks=list(cl.inject(torch.full((1, 1, 32), float(s)))))[0, 1:]
        for s in (0, 1)
    ]
    assert not torch.allclose(plain[0], plain[1])


def test_knockout_of_no_layers_is_the_plain_forward(llama):
    ids = torch.tensor([[0] + seqs(1, 9)[0]])
    mem = torch.randn(1, 1, 32)
    plain = llama.run_with_hooks(ids, fwd_hooks=list(cl.inject(mem)))
    for hs in (cl.forward_knockout(llama, 0), cl.reverse_knockout(llama, 0)):
        assert torch.equal(plain, llama.run_with_hooks(ids, fwd_hooks=list(cl.inject(mem) + hs)))


def test_forward_and_reverse_knockout_partition_the_layers():
    model = tiny("llama", bos=False)
    n = model.cfg.n_layers
    for k in range(n + 1):
        f = set(cl.forward_knockout(model, k).hook_names)
        r = set(cl.reverse_knockout(model, n - k).hook_names)
        assert not (f & r)
        assert f | r == {f"blocks.{i}.attn.hook_attn_scores" for i in range(n)}


def test_knockout_blocks_attention_mass_on_memory_with_gqa(llama):
    assert llama.cfg.n_key_value_heads < llama.cfg.n_heads
    ids = torch.tensor([[0] + seqs(1, 7)[0]])
    store: dict[int, torch.Tensor] = {}
    hs = (
        cl.inject(torch.randn(1, 1, 32))
        + cl.knockout(llama, [1])
        + cl.capture_attention_to(llama, store, key=0)
    )
    llama.run_with_hooks(ids, fwd_hooks=list(hs))
    assert float(store[1].max()) == 0.0 and float(store[0].min()) > 0.0
    assert math.isclose(float(store[0][0, 0]), 1 / 2, rel_tol=0.5)  # query 1 splits over keys 0..1


def test_kuratov_scoring_gives_the_first_token_and_decodes_the_rest(tiny_llama):
    """score_from='text': the first token is input only, so greedy must be prompted with it, not predict it."""
    from cramlens.metrics import greedy_decode, greedy_reconstruction

    layout = cl.Layout(score_from="text")
    mem = torch.randn(1, 1, tiny_llama.cfg.d_model, generator=torch.Generator().manual_seed(3))
    first = torch.tensor([[7]])
    rest = greedy_decode(tiny_llama, mem, 5, layout, prompt=first)[0].tolist()
    from_memory = greedy_decode(tiny_llama, mem, 1, layout)[0].tolist()
    assert from_memory != [7]  # the memory alone would not produce the given token
    seq = [7] + rest
    g = greedy_reconstruction(tiny_llama, mem, [seq], layout)[0]
    assert g.exact and g.tokens == seq, g
    wrong = seq[:3] + [(seq[3] + 1) % tiny_llama.cfg.d_vocab] + seq[4:]
    assert greedy_reconstruction(tiny_llama, mem, [wrong], layout)[0].first_mismatch == 3


def test_memory_is_visible_with_a_left_padding_tokenizer_whose_pad_id_is_0():
    """Gemma's tokenizer pads left with pad id 0: TransformerLens then masks leading id-0 tokens."""
    import copy

    from cramlens.forward import target_logits
    from cramlens.layout import build_batch, placeholder_id

    model = cl.load_model("tiny-llama", device="cpu")
    tok = copy.deepcopy(model.tokenizer)
    tok.padding_side = "left"
    tok.pad_token = tok.convert_ids_to_tokens(0)
    model.tokenizer = tok
    assert placeholder_id(model) != 0
    batch = build_batch(model, [[5, 6, 7, 8]], [4], cl.Layout())
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(1, 1, model.cfg.d_model, generator=g) for _ in range(2))
    with torch.no_grad():
        la, lb = target_logits(model, a, batch), target_logits(model, b, batch)
        # the plain TransformerLens call (what analyses and users run) builds its own mask from the tokens
        plain = []
        for mem in (a, b):
            with cl.inject(mem).applied(model):
                plain.append(model(batch.input_ids)[0])
    assert (la[1:] - lb[1:]).abs().max() > 1e-3  # text positions see the memory
    assert (plain[0][1:] - plain[1][1:]).abs().max() > 1e-3


def test_full_cramming_samples_decode_and_score_the_whole_text_by_default(llama):
    """A full cram that stopped short has horizon < length; its defaults still cover the text it was given."""
    full = cl.cram(llama, seqs(1, 6, seed=11), recipe=FAST, max_steps=1, check_greedy=False)[0]
    assert full.kind == "full" and full.horizon < 6
    assert len(full.generate(as_text=False)) == 6
    assert full.accuracy() == full.accuracy(6)
    prog = cl.progressive_cram(llama, seqs(1, 6, seed=11), recipe=FAST, check_greedy=False)[0]
    assert prog.kind == "progressive" and len(prog.generate(as_text=False)) == prog.horizon
