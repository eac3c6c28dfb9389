"""Unit tests of the cramming core's parts on tiny random HookedTransformers (Llama-style with GQA, GPT-2
style): hook sets and injection, layout and scoring positions, the batched optimiser, memory parametrisations
and inits, knockout hook sets.

The engine (full and progressive cramming, run directories) is tested in test_core.py; ``tiny``, the ``llama``
fixture and the ``seqs``, ``FAST`` and ``mem_spec`` helpers are in conftest.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FAST, mem_spec, seqs, tiny

import cramlens as cl
from cramlens.forward import score, target_logits
from cramlens.layout import Layout, build_batch
from cramlens.optim import BatchedAdamW, Schedule
from cramlens.params import Memory, make_memory


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
    memory = make_memory(llama, 2, mem_spec(seed=0))
    batch = build_batch(llama, seqs(2, 8), [8, 8], Layout())
    sc = score(target_logits(llama, memory.materialize(), batch), batch)
    sc.loss.sum().backward()
    emb = memory.per_sample["embedding"]
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in llama.parameters())


# ----------------------------------------------------------------------------- layout
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
    direct = make_memory(llama, 2, mem_spec(seed=3))
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
    a = make_memory(llama, 2, mem_spec(seed=1), indices=[0, 1]).materialize()
    b = make_memory(llama, 1, mem_spec(seed=1), indices=[1]).materialize()
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    assert 0 <= float(a.min()) and float(a.max()) < 0.02
    n = make_memory(llama, 1, mem_spec(seed=1, n_mem=2, init="normal0.5")).materialize()
    assert n.shape == (1, 2, 32) and float(n.min()) < 0
    with pytest.raises(cl.CramlensError, match="unknown init"):
        make_memory(llama, 1, mem_spec(seed=1, init="gaussian"))


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
