"""The claims ledger: the verdict rule on synthetic intervals (every outcome), ours from synthetic step results, the
plan, and the smoke protocol end to end on a tiny random model, run twice (nothing recomputes) and resumed."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from analyses.ledger import claims as cl
from analyses.ledger import extract as ex
from analyses.ledger import extract_eval as ee
from analyses.ledger import verdict as vd
from analyses.ledger.context import RESULT
from analyses.ledger.protocols import PROTOCOLS, get_protocol
from analyses.ledger.steps import STEPS, select
from cramlens.errors import CramlensError
from cramlens.models import load_model
from cramlens.stats import MeanCI

OUTCOMES = {vd.HOLDS, vd.DIFFERS, vd.INCONCLUSIVE, vd.NOT_RUN}


def ci(lo: float, hi: float, n: int = 10) -> MeanCI:
    return MeanCI((lo + hi) / 2, lo, hi, n, 1.0)


# ---------------------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    "interval, paper, band, outcome",
    [
        (ci(30, 45), 38.5, (28.4, 48.6), vd.HOLDS),  # the paper's value is inside
        (ci(29, 33), 38.5, (28.4, 48.6), vd.HOLDS),  # inside the band without covering the value
        (ci(10, 20), 38.5, (28.4, 48.6), vd.DIFFERS),  # below the band
        (ci(50, 60), 38.5, (28.4, 48.6), vd.DIFFERS),  # above the band
        (ci(10, 70), 38.5, (28.4, 48.6), vd.INCONCLUSIVE),  # covers the value but wider than the band
        (ci(20, 30), 38.5, (28.4, 48.6), vd.INCONCLUSIVE),  # straddles the lower edge
        (ci(30, 45, n=2), 38.5, (28.4, 48.6), vd.INCONCLUSIVE),  # n < 3
        (MeanCI(3.0, math.nan, math.nan, 5, math.nan), 38.5, (28.4, 48.6), vd.INCONCLUSIVE),  # no interval
        (ci(30, 45), None, None, vd.INCONCLUSIVE),  # no comparable paper value
    ],
)
def test_numeric_rule(interval, paper, band, outcome):
    assert vd.numeric(interval, paper, band).outcome == outcome


@pytest.mark.parametrize(
    "interval, bound, outcome",
    [
        (ci(19, 26), vd.AT_LEAST, vd.INCONCLUSIVE),  # below the band, but the true values may be higher
        (
            ci(30, 45),
            vd.AT_LEAST,
            vd.INCONCLUSIVE,
        ),  # the paper's value inside: the true mean may lie above the band
        (ci(50, 60), vd.AT_LEAST, vd.DIFFERS),  # above the band: higher true values cannot bring it back
        (ci(50, 60), vd.AT_MOST, vd.INCONCLUSIVE),  # above the band, but the true values may be lower
        (ci(19, 26), vd.AT_MOST, vd.DIFFERS),  # below the band: lower true values cannot bring it back
        (ci(19, 26), vd.EITHER_WAY, vd.INCONCLUSIVE),
        (ci(50, 60), vd.EITHER_WAY, vd.INCONCLUSIVE),
    ],
)
def test_numeric_rule_on_stopped_samples(interval, bound, outcome):
    assert vd.numeric(interval, 38.5, (28.4, 48.6), bound).outcome == outcome


@pytest.mark.parametrize(
    "interval, sign, bound, outcome",
    [
        (ci(3, 9), +1, vd.AT_LEAST, vd.HOLDS),  # a larger true effect stays above 0
        (ci(3, 9), -1, vd.AT_LEAST, vd.DIFFERS),
        (ci(-9, -3), +1, vd.AT_LEAST, vd.INCONCLUSIVE),  # the true effect may lie above 0
        (ci(-9, -3), -1, vd.AT_LEAST, vd.INCONCLUSIVE),
        (ci(3, 9), +1, vd.AT_MOST, vd.INCONCLUSIVE),  # e.g. the smaller model's horizons were stopped
        (ci(-9, -3), +1, vd.AT_MOST, vd.DIFFERS),
        (ci(-9, -3), -1, vd.AT_MOST, vd.HOLDS),
        (ci(3, 9), +1, vd.EITHER_WAY, vd.INCONCLUSIVE),
        (ci(-1, 9), +1, vd.AT_LEAST, vd.INCONCLUSIVE),
    ],
)
def test_directional_rule_on_stopped_samples(interval, sign, bound, outcome):
    assert vd.directional(interval, sign, 0.0, bound).outcome == outcome


def test_bound_of_a_paired_difference():
    assert vd.difference_bound([(False, False)] * 3) == vd.EXACT
    assert vd.difference_bound([(True, False), (False, False)]) == vd.AT_LEAST  # a − b with a stopped
    assert vd.difference_bound([(False, True), (False, False)]) == vd.AT_MOST
    assert vd.difference_bound([(True, True)]) == vd.EITHER_WAY  # both capped: the difference is unknown
    assert vd.difference_bound([(True, False), (False, True)]) == vd.EITHER_WAY
    with pytest.raises(ValueError, match="bound must be one of"):
        vd.numeric(ci(1, 2), 1.5, (1, 2), "lower")


def test_a_far_interval_differs_even_when_wider_than_the_band():
    assert vd.numeric(ci(100, 200), 38.5, (28.4, 48.6)).outcome == vd.DIFFERS


@pytest.mark.parametrize(
    "interval, sign, threshold, outcome",
    [
        (ci(-0.9, -0.5), -1, 0.0, vd.HOLDS),
        (ci(0.1, 0.4), -1, 0.0, vd.DIFFERS),
        (ci(-0.2, 0.3), -1, 0.0, vd.INCONCLUSIVE),
        (ci(0.6, 0.8), +1, 0.5, vd.HOLDS),  # PC1+PC2 above one half
        (ci(0.3, 0.45), +1, 0.5, vd.DIFFERS),
        (ci(0.45, 0.55), +1, 0.5, vd.INCONCLUSIVE),
        (ci(-0.9, -0.5, n=2), -1, 0.0, vd.INCONCLUSIVE),
    ],
)
def test_directional_rule(interval, sign, threshold, outcome):
    assert vd.directional(interval, sign, threshold).outcome == outcome


def test_directional_rule_needs_a_sign():
    with pytest.raises(ValueError):
        vd.directional(ci(0, 1), 0)


def test_bands():
    from cramlens.paper import COMPRESSED_TOKENS

    lo, hi = cl.Band(paper_interval=True).resolve(COMPRESSED_TOKENS["smollm2-135m"])
    assert lo == pytest.approx(38.5 - 10.09, abs=0.01) and hi == pytest.approx(38.5 + 10.09, abs=0.01)
    pv = COMPRESSED_TOKENS["smollm2-135m"]
    assert cl.Band(relative=0.25).resolve(pv) == pytest.approx((28.875, 48.125))
    assert cl.Band(plus_minus=1.0).resolve(pv) == (37.5, 39.5)
    assert cl.Band(1.0, 2.0).resolve(pv) == (1.0, 2.0)


# ---------------------------------------------------------------------------------------------- ours from results
def progressive_result(tokens_by_text: dict[str, list[int]]) -> dict:
    rows = []
    for t, values in tokens_by_text.items():
        for seed, v in enumerate(values):
            rows.append(
                {
                    "text_id": t,
                    "seed": seed,
                    "horizon": v - 1,
                    "compressed_tokens": v,
                    "ig_bits": 7.0 * v,
                    "ig_final_bits": 7.0 * v + 3,
                    "greedy_exact": True,
                    "lower_bound": False,
                }
            )
    return {"samples": rows, "seq_len": 64}


def test_horizon_row_is_per_text_and_judged_against_the_papers_interval():
    claim = next(c for c in cl.CLAIMS if c.id == "compressed_tokens")
    near = {"progressive": progressive_result({f"t{i}": [37 + i % 5, 39 + i % 3] for i in range(12)})}
    row = cl.evaluate(claim, "smollm2-135m", near, "cmd")
    assert row.ours["n"] == 12  # texts, not texts x seeds
    assert row.verdict == vd.HOLDS and row.paper["same_model"] and row.command == "cmd"
    far = {"progressive": progressive_result({f"t{i}": [8 + i % 3, 9] for i in range(12)})}
    assert cl.evaluate(claim, "smollm2-135m", far, "cmd").verdict == vd.DIFFERS
    capped = {
        "progressive": {**far["progressive"], "samples": [dict(r) for r in far["progressive"]["samples"]]}
    }
    capped["progressive"]["samples"][0]["lower_bound"] = True  # one sample stopped by its budget
    row = cl.evaluate(claim, "smollm2-135m", capped, "cmd")
    assert row.verdict == vd.INCONCLUSIVE and "1 of 24 horizons are lower bounds" in row.note
    other = cl.evaluate(claim, "tiny-llama", near, "cmd")  # the paper has no value for this model
    assert other.verdict == vd.INCONCLUSIVE and other.paper is None
    assert cl.evaluate(claim, "smollm2-135m", {}, "cmd").verdict == vd.NOT_RUN


def test_choice_effect_is_paired_over_reconstructed_items():
    items = [
        {
            "id": str(i),
            "converged": i < 40,
            "base": {"context_ending": i % 2 == 0},
            "cram": {"context_ending": i % 4 == 0},
            "random": {"context_ending": True},
        }
        for i in range(50)
    ]
    res = {"hellaswag": {"items": items}}
    o = ee.choice_effect("hellaswag", "base")(res)
    assert o.ci.n == 40 and o.ci.mean == pytest.approx(-25.0)  # 20 right → 10 right of 40
    assert ee.choice_effect("hellaswag", "random")(res).ci.mean == pytest.approx(-75.0)
    assert ee.choice_effect("arc_easy", "base")(res) is None
    assert "the paper's cram scoring" in o.note  # a result without its scoring predates Kuratov's option
    res["hellaswag"]["score_from"] = "text"
    assert "Kuratov's cram scoring" in ee.choice_effect("hellaswag", "base")(res).note


def test_knockout_effect_reads_the_condition_of_each_mask():
    items = {
        str(i): {
            "cram": {"tf": 1.0, "correct": True},
            "forward:2": {"tf": 0.5, "correct": True},
            "forward:2@reference": {"tf": 0.25, "correct": False},
        }
        for i in range(5)
    }
    res = {
        "knockout": {
            "k": 2,
            "n_layers": 4,
            "conditions": ["cram", "forward:2", "forward:2@reference"],
            "items": items,
        }
    }
    assert ee.knockout_effect("forward", "text")(res).ci.mean == pytest.approx(-0.5)
    assert ee.knockout_effect("forward", "reference")(res).ci.mean == pytest.approx(-0.75)


def test_capacity_law_is_positive_when_bits_match_and_tokens_do_not():
    pg = [{"text_id": f"p{i}", "seed": 0, "horizon": 40 + i, "ig_bits": 200.0 + i} for i in range(8)]
    rw = [
        {"text_id": f"r{i}", "horizon": 10 + i % 3, "ig_bits": 205.0 - i, "lower_bound": False}
        for i in range(8)
    ]
    o = ex.capacity_law(
        {"progressive": {"samples": pg}, "capacity": {"source": "random-words", "samples": rw}}
    )
    assert o.ci.lo > 0.5 and o.ci.n == 8
    assert vd.directional(o.ci, +1).outcome == vd.HOLDS


def test_two_sample_bootstrap_resamples_each_group():
    got = ex.two_sample_bootstrap_ci([list(range(20)), [5.0] * 4], lambda g: sum(g[0]) / len(g[0]) - g[1][0])
    assert got.lo < 4.5 < got.hi and got.n == 4


def test_sink_correlation_of_mean_profiles():
    prof = [[10.0 * layer + i for layer in range(6)] for i in range(5)]
    res = {
        "sinks": {
            "samples": [f"t{i}" for i in range(5)],
            "s_max": 8,
            "profiles": {"compression": prof, "orig": [[2 * x for x in p] for p in prof]},
        }
    }
    o = ex.sink_correlation(res)
    assert o.ci.mean == pytest.approx(1.0) and o.ci.n == 5
    assert ex.sink_share(res).ci.mean == pytest.approx(np.mean(prof))


def test_model_size_row_pairs_texts_and_states_what_else_changes():
    from analyses.ledger.compare import model_size_rows
    from analyses.ledger.context import ModelInfo

    small = ModelInfo(
        "smollm2-135m", 30, 576, 49152, 135_000_000, False, "SmolLM2-135M-Instruct (Llama arch)"
    )
    large = ModelInfo("gemma-3-270m", 18, 640, 262144, 270_000_000, True, "Gemma 3 270M base")
    res_small = {"progressive": progressive_result({f"t{i}": [30 + i, 32 + i] for i in range(6)})}
    res_large = {"progressive": progressive_result({f"t{i}": [60 + i] for i in range(1, 8)})}
    (row,) = model_size_rows({"gemma-3-270m": (large, res_large), "smollm2-135m": (small, res_small)}, "cmd")
    assert row.claim == "model_size:smollm2-135m→gemma-3-270m" and row.ours["n"] == 5  # t1..t5 in both
    assert row.ours["mean"] == pytest.approx(29.0) and row.verdict == vd.HOLDS and row.paper["same_model"]
    assert (
        "width d_model 576 → 640" in row.note
        and "layers 30 → 18" in row.note
        and "families differ" in row.note
    )
    # the smaller model's horizons stopped by a cap: its true values may be higher, so a positive gap proves nothing
    for r in res_small["progressive"]["samples"]:
        r["lower_bound"] = r["text_id"] in {"t1", "t2"}
    (row,) = model_size_rows({"gemma-3-270m": (large, res_large), "smollm2-135m": (small, res_small)}, "cmd")
    assert row.verdict == vd.INCONCLUSIVE and "2 of 5 smollm2-135m texts" in row.note
    # only the larger model's stopped: its true values can only widen the gap
    for r in res_small["progressive"]["samples"]:
        r["lower_bound"] = False
    res_large["progressive"]["samples"][0]["lower_bound"] = True
    (row,) = model_size_rows({"gemma-3-270m": (large, res_large), "smollm2-135m": (small, res_small)}, "cmd")
    assert row.verdict == vd.HOLDS and "1 of 5 gemma-3-270m texts" in row.note
    # a model whose progressive step has not finished yet: the row is there, "not run"
    (row,) = model_size_rows({"gemma-3-270m": (large, {}), "smollm2-135m": (small, res_small)}, "cmd")
    assert row.verdict == vd.NOT_RUN and row.ours is None and "gemma-3-270m" in row.reason
    assert "width d_model 576 → 640" in row.note
    assert model_size_rows({"smollm2-135m": (small, res_small)}, "cmd") == []


def test_depth_gain_and_capacity_law_carry_the_bound_of_stopped_horizons():
    def variant(horizons, stopped):
        return {
            "samples": [
                {"text_id": f"t{i}", "horizon": h, "lower_bound": s}
                for i, (h, s) in enumerate(zip(horizons, stopped, strict=True))
            ]
        }

    def depth(shallow_stopped, deep_stopped):
        return {
            "depth": {
                "depths": [1, 4],
                "variants": {
                    "1": variant([6, 7, 6, 7], shallow_stopped),
                    "4": variant([16, 19, 13, 18], deep_stopped),
                },
            }
        }

    none, one = [False] * 4, [True] + [False] * 3
    assert ex.depth_gain(depth(none, none)).bound == vd.EXACT
    assert ex.depth_gain(depth(none, one)).bound == vd.AT_LEAST
    assert ex.depth_gain(depth(one, none)).bound == vd.AT_MOST
    claim = next(c for c in cl.CLAIMS if c.id == "depth_gain")
    assert cl.evaluate(claim, "smollm2-135m", depth(none, one), "cmd").verdict == vd.HOLDS
    assert cl.evaluate(claim, "smollm2-135m", depth(one, none), "cmd").verdict == vd.INCONCLUSIVE
    pg = [{"text_id": f"p{i}", "seed": 0, "horizon": 40 + i, "ig_bits": 200.0 + i} for i in range(8)]
    rw = [
        {"text_id": f"r{i}", "horizon": 10 + i % 3, "ig_bits": 205.0 - i, "lower_bound": i == 0}
        for i in range(8)
    ]
    law = ex.capacity_law(
        {"progressive": {"samples": pg}, "capacity": {"source": "random-words", "samples": rw}}
    )
    assert law.bound == vd.EITHER_WAY and law.ci.lo > 0
    claim = next(c for c in cl.CLAIMS if c.id == "capacity_law")
    law_res = {"progressive": {"samples": pg}, "capacity": {"source": "random-words", "samples": rw}}
    assert cl.evaluate(claim, "smollm2-135m", law_res, "cmd").verdict == vd.INCONCLUSIVE


def test_select_adds_what_a_step_needs():
    assert [s.name for s in select(["knockout"])] == ["hellaswag", "knockout"]
    assert [s.name for s in select(["trajectory", "capacity"])] == ["progressive", "trajectory", "capacity"]
    assert len(select(None)) == len(STEPS)
    with pytest.raises(CramlensError, match="unknown step"):
        select(["nope"])


def test_every_claim_has_a_step_and_every_protocol_states_its_sizes():
    names = {s.name for s in STEPS}
    assert all(c.step in names for c in cl.CLAIMS) and len({c.id for c in cl.CLAIMS}) == len(cl.CLAIMS)
    assert PROTOCOLS["cpu"].progressive.texts >= 20 and PROTOCOLS["cpu"].hellaswag.items >= 200
    assert PROTOCOLS["cpu"].arc_easy.items >= 200
    with pytest.raises(CramlensError, match="unknown protocol"):
        get_protocol("huge")


# ---------------------------------------------------------------------------------------------- end to end
def tiny_loader(name: str):
    return load_model(name, device="cpu")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from analyses.ledger import reproduce

    out = tmp_path_factory.mktemp("ledger")
    ledger = reproduce(["tiny-llama"], "smoke", out, load=tiny_loader, live=False)
    return out, ledger


def test_smoke_protocol_writes_a_ledger_with_one_row_per_claim(smoke):
    out, ledger = smoke
    rows = ledger.rows["tiny-llama"]
    assert [r.claim for r in rows] == [c.id for c in cl.CLAIMS]
    assert {r.verdict for r in rows} <= OUTCOMES - {vd.NOT_RUN}  # every step ran
    assert all(
        r.command.startswith("python scripts/reproduce.py --model tiny-llama --protocol smoke") for r in rows
    )
    for step in STEPS:
        assert (out / "tiny-llama" / step.name / RESULT).exists()
    md = (out / "ledger.md").read_text()
    assert "The verdict rule" in md and "progressive: 3 pg19 texts" in md and "brittleness_gap" in md
    data = json.loads((out / "ledger.json").read_text())  # strict JSON: no NaN
    assert len(data["rows"]["tiny-llama"]) == len(cl.CLAIMS) and data["rule"] == vd.RULE
    assert (out / "ledger.html").exists() and "| claim | paper |" in (out / "findings.md").read_text()


def test_every_table_line_has_as_many_cells_as_its_header(smoke):
    import re

    from analyses.ledger.render import findings

    out, ledger = smoke
    assert any("|ln" in r.statement for r in ledger.rows["tiny-llama"])  # a statement with "|" in it
    for text in ((out / "ledger.md").read_text(), findings(ledger)):
        header_cells = None
        for line in text.splitlines():
            if not line.startswith("|"):
                header_cells = None
                continue
            cells = len(re.findall(r"(?<!\\)\|", line))  # unescaped pipes
            header_cells = header_cells or cells
            assert cells == header_cells, line


def test_rerun_skips_every_finished_step(smoke, monkeypatch):
    from analyses.ledger import reproduce
    from analyses.ledger import run as run_mod

    out, _ = smoke
    stamps = {p: p.stat().st_mtime_ns for p in out.glob(f"*/*/{RESULT}")}

    def boom(ctx):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(run_mod, "select", lambda only: [dataclasses.replace(s, run=boom) for s in STEPS])
    ledger = reproduce(["tiny-llama"], "smoke", out, load=tiny_loader, live=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob(f"*/*/{RESULT}")} == stamps
    assert len(ledger.rows["tiny-llama"]) == len(cl.CLAIMS)


def test_an_unfinished_step_resumes_from_its_run_directory(smoke):
    from analyses.ledger import reproduce

    out, _ = smoke
    path = out / "tiny-llama" / "progressive" / RESULT
    before = json.loads(path.read_text())
    path.unlink()  # killed after cramming, before the step wrote its result
    reproduce(["tiny-llama"], "smoke", out, only=["progressive"], load=tiny_loader, live=False)
    after = json.loads(path.read_text())
    assert after["samples"] == before["samples"]


def test_another_protocol_in_the_same_directory_is_refused(smoke):
    from analyses.ledger import reproduce

    out, _ = smoke
    other = dataclasses.replace(
        PROTOCOLS["smoke"], brittleness=dataclasses.replace(PROTOCOLS["smoke"].brittleness, texts=3)
    )
    with pytest.raises(CramlensError, match="another --out"):
        reproduce(["tiny-llama"], other, out, load=tiny_loader, live=False, plan_only=True)


def _copy(out, tmp_path):
    import shutil

    return shutil.copytree(out, tmp_path / "ledger")


def test_changing_an_unfinished_steps_sizes_keeps_the_finished_steps(smoke, tmp_path):
    from analyses.ledger import reproduce

    out = _copy(smoke[0], tmp_path)
    root = out / "tiny-llama"
    smoke_p = PROTOCOLS["smoke"]
    other = dataclasses.replace(smoke_p, hellaswag=dataclasses.replace(smoke_p.hellaswag, max_steps=7))
    (root / "hellaswag" / RESULT).unlink()
    # knockout reads hellaswag's crams: while it stays finished, the new hellaswag sizes are refused for it
    with pytest.raises(CramlensError, match=r"knockout was run with other hellaswag sizes"):
        reproduce(["tiny-llama"], other, out, load=tiny_loader, live=False, plan_only=True)
    (root / "knockout" / RESULT).unlink()
    stamp = (root / "brittleness" / RESULT).stat().st_mtime_ns
    reproduce(["tiny-llama"], other, out, load=tiny_loader, live=False, plan_only=True)
    assert json.loads((root / "protocol.json").read_text())["hellaswag"]["max_steps"] == 7
    assert (root / "brittleness" / RESULT).stat().st_mtime_ns == stamp


def test_a_step_result_without_sizes_takes_them_from_the_old_protocol_file(smoke, tmp_path):
    from analyses.ledger import reproduce
    from analyses.ledger.steps import sizes_of

    out = _copy(smoke[0], tmp_path)
    root = out / "tiny-llama"
    path = root / "brittleness" / RESULT
    result = json.loads(path.read_text())
    assert result.pop("sizes") == sizes_of("brittleness", json.loads((root / "protocol.json").read_text()))
    path.write_text(json.dumps(result))  # a result written before steps recorded their sizes
    smoke_p = PROTOCOLS["smoke"]
    other = dataclasses.replace(smoke_p, brittleness=dataclasses.replace(smoke_p.brittleness, texts=3))
    with pytest.raises(CramlensError, match="brittleness was run with other brittleness sizes"):
        reproduce(["tiny-llama"], other, out, load=tiny_loader, live=False, plan_only=True)
    assert json.loads(path.read_text())["sizes"]["brittleness"]["texts"] == smoke_p.brittleness.texts


def test_the_ledger_keeps_models_run_earlier_into_the_same_directory(smoke, tmp_path):
    import shutil

    from analyses.ledger import reproduce

    out = _copy(smoke[0], tmp_path)
    for name, n_params, protocol in (("tiny-wide", 10**9, "smoke"), ("tiny-cpu", 10**9, "cpu")):
        shutil.copytree(out / "tiny-llama", out / name)  # a model run on another day (or another protocol)
        info = json.loads((out / name / "model.json").read_text())
        (out / name / "model.json").write_text(json.dumps({**info, "name": name, "n_params": n_params}))
        proto = json.loads((out / name / "protocol.json").read_text())
        (out / name / "protocol.json").write_text(json.dumps({**proto, "name": protocol}))
    ledger = reproduce(["tiny-llama"], "smoke", out, load=tiny_loader, live=False, plan_only=True)
    assert list(ledger.rows) == [
        "tiny-llama",
        "tiny-wide",
    ]  # smallest first; the cpu-protocol one is left out
    assert [r.claim for r in ledger.cross_model] == ["model_size:tiny-llama→tiny-wide"]
    assert "## tiny-wide" in (out / "ledger.md").read_text()


def test_sinks_read_only_samples_that_reconstruct_enough_tokens(smoke, tmp_path):
    from analyses.ledger import reproduce
    from analyses.ledger.protocols import SinkSize

    out = _copy(smoke[0], tmp_path)
    first = json.loads((out / "tiny-llama" / "sinks" / RESULT).read_text())
    (out / "tiny-llama" / "sinks" / RESULT).unlink()
    strict = dataclasses.replace(PROTOCOLS["smoke"], sinks=SinkSize(min_tokens=100))
    ledger = reproduce(["tiny-llama"], strict, out, only=["sinks"], load=tiny_loader, live=False)
    result = json.loads((out / "tiny-llama" / "sinks" / RESULT).read_text())
    assert result["samples"] == [] and result["sizes"]["sinks"] == {"min_tokens": 100}
    row = next(r for r in ledger.rows["tiny-llama"] if r.claim == "sink_share")
    assert row.verdict == vd.INCONCLUSIVE and "no sample reconstructs 100 tokens" in row.note
    assert first["min_tokens"] == 2 and (not first["samples"] or first["s_max"] >= 2)


def test_plan_measures_a_positive_step_cost_and_marks_finished_steps(smoke):
    from analyses.ledger.context import ModelInfo
    from analyses.ledger.plan import measure_step_cost, plan

    out, _ = smoke
    model = tiny_loader("tiny-llama")
    cost = measure_step_cost(model, shapes=((1, 4), (4, 8)), steps=(1, 2))
    assert cost.per_token_step_s > 0 and cost.fixed_s >= 0 and cost.busy > 0
    planned = plan(list(STEPS), PROTOCOLS["cpu"], ModelInfo.of(model, "tiny-llama"), cost, out / "tiny-llama")
    assert all(p.done for p in planned) and all(p.expected_s > 0 for p in planned if p.work.token_steps > 0)


def test_seeds_group_per_text(tmp_path):
    from analyses.ledger.context import StepContext
    from analyses.ledger.cram_steps import progressive

    proto = PROTOCOLS["smoke"]
    proto = dataclasses.replace(proto, progressive=dataclasses.replace(proto.progressive, seeds=(0, 1)))
    ctx = StepContext(tiny_loader("tiny-llama"), "tiny-llama", proto, tmp_path, log=lambda s: None)
    rows = progressive(ctx)["samples"]
    assert sorted({r["seed"] for r in rows}) == [0, 1] and len(rows) == 2 * proto.progressive.texts
    o = ex.compressed_tokens({"progressive": {"samples": rows, "seq_len": 6}})
    assert o.ci.n == proto.progressive.texts


def test_script_takes_several_models():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "reproduce", Path(__file__).parents[1] / "scripts" / "reproduce.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a = mod.parse(
        ["--model", "smollm2-135m", "--model", "gemma-3-270m", "--protocol", "smoke", "--only", "progressive"]
    )
    assert a.model == ["smollm2-135m", "gemma-3-270m"] and a.only == ["progressive"]
    assert mod.parse([]).model == ["smollm2-135m"]
