"""Unit tests of the cramming engine on tiny random HookedTransformers: full and progressive cramming, run
directories (resume, refusal, torn rows) and input errors.

Hook sets, layout, optimiser, parametrisations and knockout are in test_core_hooks_params.py; the ``llama``
fixture and the ``seqs``, ``FAST`` and ``mem_spec`` helpers are in conftest.py.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, mem_spec, seqs

import cramlens as cl
from cramlens.engine import CramLoop
from cramlens.layout import Layout
from cramlens.params import make_memory
from cramlens.recipe import Recipe


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
    memory = make_memory(llama, 2, mem_spec(seed=0))
    with torch.no_grad():
        memory.per_sample["embedding"][1] = float("nan")
    rows = []
    CramLoop(llama, texts, memory, FAST, min_len=2).run(on_stage=rows.append)
    bad = [r for r in rows if r.sample == 1]
    assert len(bad) == 1 and bad[0].reason == "nan_loss"
    good = [r for r in rows if r.sample == 0]
    assert len(good) == 1 and good[0].converged
    alone = []
    CramLoop(llama, texts[:1], make_memory(llama, 1, mem_spec(seed=0)), FAST, min_len=2).run(
        on_stage=alone.append
    )
    assert alone[0].steps_taken == good[0].steps_taken  # the NaN companion leaked nothing


def test_full_cramming_samples_decode_and_score_the_whole_text_by_default(llama):
    """A full cram that stopped short has horizon < length; its defaults still cover the text it was given."""
    full = cl.cram(llama, seqs(1, 6, seed=11), recipe=FAST, max_steps=1, check_greedy=False)[0]
    assert full.kind == "full" and full.horizon < 6
    assert len(full.generate(as_text=False)) == 6
    assert full.accuracy() == full.accuracy(6)
    prog = cl.progressive_cram(llama, seqs(1, 6, seed=11), recipe=FAST, check_greedy=False)[0]
    assert prog.kind == "progressive" and len(prog.generate(as_text=False)) == prog.horizon


# ----------------------------------------------------------------------------- progressive cramming
def test_progressive_warm_start_carries_embedding_moments_and_schedule(llama):
    memory = make_memory(llama, 1, mem_spec(seed=0))
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
