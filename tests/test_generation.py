"""Greedy reconstruction is real generation (KV cache, own tokens fed back, in the dtype that runs), and it can
disagree with teacher forcing. Tiny seeded random models only; every construction is deterministic."""

from __future__ import annotations

import copy

import pytest
import torch

import cramlens as cl
from cramlens.generation import (
    cast_model,
    generate,
    given_count,
    regenerate,
    regenerate_by_dtype,
    regenerate_many,
)
from cramlens.layout import placeholder_id
from cramlens.metrics import greedy_decode, greedy_reconstruction, teacher_forced_accuracy

BF16_REL = 2.0**-8  # half a bf16 ulp relative to the value: bf16 keeps 8 significant bits


def rand_mem(model, m: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, m, model.cfg.d_model, generator=torch.Generator().manual_seed(seed))


def no_cache_decode(model, mem, n, layout, given=()):
    prompt = torch.tensor([list(given)]) if given else None
    return greedy_decode(model, mem, n, layout, prompt=prompt)[0].tolist()


# ------------------------------------------------------------------------------------------- (a) the KV path
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("m", [1, 3])
def test_kv_cache_generation_equals_no_cache_argmax_decode(name, m, tiny_llama, tiny_gpt2):
    model = {"tiny-llama": tiny_llama, "tiny-gpt2": tiny_gpt2}[name]
    layout = cl.Layout(n_mem=m)
    mem = rand_mem(model, m, seed=m)
    given = layout.sequence(model, [])  # [BOS] for gpt2 (fed after the memory), [] for llama
    g = generate(model, mem, 10, layout, given=given)
    assert g.ids == no_cache_decode(model, mem, 10, layout, given)
    # the comparison is meaningful: no step is a near-tie that rounding could flip either way
    assert min(g.gaps) > 1e-4, g.gaps
    # the memory reaches every generated step through the cache (another memory, another continuation)
    assert generate(model, rand_mem(model, m, seed=99), 10, layout, given=given).ids != g.ids


def test_memory_is_injected_on_the_first_call_only(tiny_llama):
    """With m=1 an injection hook left on later calls would overwrite each fed token (position 0 of its call)."""
    layout = cl.Layout()
    mem = rand_mem(tiny_llama)
    g = generate(tiny_llama, mem, 6, layout)
    with cl.inject(mem).applied(tiny_llama):  # the bug: the hook stays on for every call
        wrong = generate(tiny_llama, mem, 6, layout)
    assert g.ids == no_cache_decode(tiny_llama, mem, 6, layout) and wrong.ids != g.ids


def test_control_layout_memory_after_bos(tiny_gpt2):
    layout = cl.Layout(n_mem=2, mem_first=False)  # [BOS][mem_1 mem_2][x]
    assert layout.prefix(tiny_gpt2) == [tiny_gpt2.tokenizer.bos_token_id]
    mem = rand_mem(tiny_gpt2, 2, seed=4)
    g = generate(tiny_gpt2, mem, 8, layout)
    assert g.ids == no_cache_decode(tiny_gpt2, mem, 8, layout)
    r = regenerate(tiny_gpt2, mem, g.ids, layout)
    assert r.exact and r.n_given == 0 and r.tokens == g.ids


# ----------------------------------------------------------------- (b) teacher forcing and generation differ
def _forced_mistake(model, mem, layout, n: int, j: int) -> list[int]:
    """A text the model predicts under teacher forcing everywhere but position ``j``: greedy up to ``j``, then
    the runner-up token at ``j``, then the greedy continuation *given* that token."""
    head = generate(model, mem, j + 1, layout, keep_logits=True)
    runner_up = int(head.logits[j].topk(2).indices[1])
    prefix = head.ids[:j] + [runner_up]
    return prefix + generate(model, mem, n - j - 1, layout, given=prefix).ids


def test_generation_feeds_back_its_own_mistake_where_teacher_forcing_recovers(tiny_llama):
    layout, n, j = cl.Layout(), 10, 3
    mem = rand_mem(tiny_llama, seed=1)
    text = _forced_mistake(tiny_llama, mem, layout, n, j)
    tf = float(teacher_forced_accuracy(tiny_llama, mem, [text], layout)[0])
    g = regenerate(tiny_llama, mem, text, layout)
    assert tf == pytest.approx((n - 1) / n)  # one teacher-forced miss, at j
    assert not g.exact and g.first_mismatch == j and g.n_correct == j and g.n_given == 0
    assert g.tokens[j + 1 :] != text[j + 1 :]  # after its own token generation does not return to the text
    assert g.match < tf
    assert g.min_margin < 0 and g.min_margin == min(g.margins[: j + 1]) and g.margins[j] < 0
    assert all(x > 0 for x in g.margins[:j])


def _bf16_boundary_memory(model, layout):
    """A memory whose first generated token has an fp32 margin below bf16 resolution, on the wrong side for bf16.

    Along the segment between two random memories that generate different first tokens, bisect (fp32) to the
    switch, then scan nearby points for one where fp32 and bf16 generation disagree, keeping the one with the
    largest fp32 margin (far above fp32 rounding, so fp32 teacher forcing agrees with fp32 generation).
    """
    bf = cast_model(model, torch.bfloat16)
    a, b = rand_mem(model, seed=0), rand_mem(model, seed=1)

    def mem(al: float) -> torch.Tensor:
        return (1 - al) * a + al * b

    def first(mdl, al):
        return generate(mdl, mem(al), 1, layout)

    tok_a = first(model, 0.0).ids[0]
    assert first(model, 1.0).ids[0] != tok_a
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if first(model, mid).ids[0] == tok_a else (lo, mid)
    best = None
    for k in range(-40, 41):
        al = lo + k * 2e-4
        g32, g16 = first(model, al), first(bf, al)
        if g32.ids != g16.ids and g32.gaps[0] > 1e-3 and (best is None or g32.gaps[0] > best[1]):
            best = (al, g32.gaps[0])
    assert best is not None, "no fp32/bf16 disagreement near the boundary"
    return mem(best[0]), bf


def test_fp32_generation_exact_where_bf16_generation_is_not(tiny_llama):
    layout = cl.Layout()
    mem, bf = _bf16_boundary_memory(tiny_llama, layout)
    text = generate(tiny_llama, mem, 6, layout).ids  # what fp32 generates: the text this memory "holds"
    by = regenerate_by_dtype(tiny_llama, mem, text, layout)
    g32, g16 = by["float32"], by["bfloat16"]
    assert g32.exact and g32.dtype == "float32" and g32.tokens == text
    logit_scale = max(abs(v) for v in generate(tiny_llama, mem, 1, layout).top2[0])
    assert 0 < g32.min_margin < BF16_REL * logit_scale  # exact in fp32 by less than bf16 can resolve
    assert not g16.exact and g16.first_mismatch == 0 and g16.n_correct == 0 and g16.dtype == "bfloat16"
    assert g16.min_margin <= 0
    # teacher forcing (fp32, one full forward) says 1.0: it cannot see what bf16 generation does
    assert float(teacher_forced_accuracy(tiny_llama, mem, [text], layout)[0]) == 1.0
    # the option on the metrics entry point and a model cast once give the same answer
    assert greedy_reconstruction(tiny_llama, mem, [text], layout, dtype="bfloat16")[0] == g16
    assert regenerate(bf, mem, text, layout) == g16
    assert regenerate(tiny_llama, mem, text, layout) == g32


def test_cast_model_is_a_bf16_copy(tiny_llama):
    bf = cast_model(tiny_llama, "bf16")
    assert bf is not tiny_llama and bf.cfg.dtype == torch.bfloat16 and tiny_llama.cfg.dtype == torch.float32
    assert (
        next(bf.parameters()).dtype == torch.bfloat16 and next(tiny_llama.parameters()).dtype == torch.float32
    )
    assert bf.tokenizer is tiny_llama.tokenizer
    assert cast_model(tiny_llama, torch.float32) is tiny_llama
    # the same weights as loading in bf16
    loaded = cl.load_model("tiny-llama", device="cpu", dtype="bfloat16")
    assert all(torch.equal(p, q) for p, q in zip(bf.parameters(), loaded.parameters(), strict=True))


# --------------------------------------------------------------------------- (c) planted mismatches
def test_first_mismatch_and_correct_prefix_on_planted_texts(tiny_llama):
    layout, n = cl.Layout(), 8
    mem = rand_mem(tiny_llama, seed=2)
    gen = generate(tiny_llama, mem, n, layout, keep_logits=True)
    text = gen.ids
    ok = regenerate(tiny_llama, mem, text, layout)
    assert ok.exact and ok.first_mismatch is None and ok.n_correct == n and ok.match == 1.0
    assert ok.min_margin == pytest.approx(min(ok.gaps)) and ok.min_gap == min(ok.gaps)
    for j in (0, 4, n - 1):
        planted = list(text)
        planted[j] = (planted[j] + 1) % tiny_llama.cfg.d_vocab
        g = regenerate(tiny_llama, mem, planted, layout)
        assert (g.exact, g.first_mismatch, g.n_correct) == (False, j, j)
        assert g.tokens[: j + 1] == text[: j + 1]  # generation is the same up to the planted token
        want = float(gen.logits[j][planted[j]] - gen.logits[j].max())
        assert want < 0 and g.margins[j] == pytest.approx(want) and g.min_margin == pytest.approx(want)
        assert g.mismatch_at(j) and not g.mismatch_at(j - 1 if j else n)
    # a shorter generation than the text cannot happen: every target position gets a generated token
    assert len(regenerate(tiny_llama, mem, text[:3], layout).tokens) == 3


def test_kuratov_scoring_gives_the_first_token(tiny_llama):
    layout = cl.Layout(score_from="text")
    mem = rand_mem(tiny_llama, seed=3)
    rest = generate(tiny_llama, mem, 5, layout, given=[7]).ids
    text = [7] + rest
    g = regenerate(tiny_llama, mem, text, layout)
    assert g.n_given == 1 and g.exact and g.tokens == text and len(g.margins) == 5
    wrong = text[:3] + [(text[3] + 1) % tiny_llama.cfg.d_vocab] + text[4:]
    g = regenerate(tiny_llama, mem, wrong, layout)
    assert (g.first_mismatch, g.n_correct) == (3, 2)


def test_greedy_reconstruction_keeps_its_callers_shape(tiny_llama):
    layout = cl.Layout()
    mems = torch.cat([rand_mem(tiny_llama, seed=s) for s in (5, 6)])
    texts = [generate(tiny_llama, mems[j], 4 + j, layout).ids for j in (0, 1)]
    texts[1][2] += 1
    rs = greedy_reconstruction(tiny_llama, mems, texts, layout)
    assert rs == regenerate_many(tiny_llama, mems, texts, layout)
    assert [(r.exact, r.first_mismatch, r.match) for r in rs] == [(True, None, 1.0), (False, 2, 4 / 5)]
    assert isinstance(rs[0].tokens, list) and rs[0].tokens == texts[0]


# ------------------------------------------------------------------------------- (d) a BOS after the memory
def _gemma_like_tiny() -> object:
    """tiny-gpt2 (adds BOS) with Gemma's tokenizer habit: pad id 0, padding on the left."""
    model = cl.load_model("tiny-gpt2", device="cpu")
    tok = copy.deepcopy(model.tokenizer)
    tok.padding_side = "left"
    tok.pad_token = tok.convert_ids_to_tokens(0)
    model.tokenizer = tok
    return model


def test_bos_layout_feeds_bos_after_the_memory():
    model = _gemma_like_tiny()
    assert model.cfg.default_prepend_bos and placeholder_id(model) != 0
    bos = model.tokenizer.bos_token_id
    layout = cl.Layout()
    mem = rand_mem(model, seed=7)
    seq = layout.sequence(model, generate(model, mem, 6, layout, given=[bos]).ids)  # [BOS] + x
    assert (
        seq[0] == bos and given_count(model, layout, feed_bos=True) == 1 and given_count(model, layout) == 0
    )
    widths: list[int] = []

    def record(embed, hook):
        widths.append(embed.shape[1])

    with model.hooks(fwd_hooks=[("hook_embed", record)]):
        g = regenerate(model, mem, seq, layout, feed_bos=True)
    assert widths == [2] + [1] * 5  # first call [mem][BOS], then x one token at a time (the last is not fed)
    assert g.exact and g.n_given == 1 and len(g.margins) == 6 and g.tokens == seq
    assert g.tokens[1:] == no_cache_decode(model, mem, 6, layout, given=[bos])
    # feed_bos=False: the memory must generate the BOS itself (what teacher forcing scores at index 0)
    own = regenerate(model, mem, seq, layout)
    assert own.n_given == 0 and len(own.margins) == 7
    assert own.tokens[0] == no_cache_decode(model, mem, 1, layout)[0]
    assert own.exact == (own.tokens[0] == bos)
    # Kuratov scoring with a BOS: the BOS is the given first token either way
    assert given_count(model, cl.Layout(score_from="text"), feed_bos=False) == 1
    # the control layout has its BOS before the memory: nothing after the memory is given
    assert given_count(model, cl.Layout(mem_first=False)) == 0
