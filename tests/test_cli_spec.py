"""The command line is generated from the spec's dataclasses (cramlens.cli.add_dataclass_args): a field with
``help`` metadata is an option, ``spec_from_args`` reads the options back over the ``--recipe`` preset, and argv →
spec → to_dict → from_dict round-trips. ``--results DIR`` refreshes a results/ folder after a script's run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cramlens import cli
from cramlens.layout import Layout
from cramlens.recipe import PRESETS, Recipe
from cramlens.spec import CramSpec

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))


@dataclass(frozen=True)
class Toy:
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    count: int = field(default=3, metadata={"help": "a count", "flag": "--n"})
    mode: str = field(default="a", metadata={"help": "a mode", "choices": ["a", "b"]})
    verbose: bool = field(default=False, metadata={"help": "a switch"})
    first: bool = field(
        default=True, metadata={"help": "the opposite switch", "flag": "--last", "const": False}
    )
    pair: tuple[float, float] = field(
        default=(1.0, 2.0),
        metadata={
            "help": "second of pair",
            "flag": "--second",
            "dest": "second",
            "type": float,
            "apply": lambda base, v: (base.pair[0], v),
        },
    )
    hidden: int = 7  # no metadata: no option


def toy_parser(from_preset: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    cli.add_dataclass_args(p, Toy, from_preset=from_preset)
    return p


def test_a_dataclass_field_with_metadata_becomes_an_option():
    p = toy_parser()
    flags = {o for a in p._actions for o in a.option_strings}
    assert {"--rate", "--n", "--mode", "--verbose", "--last", "--second"} <= flags
    assert "--hidden" not in flags
    a = p.parse_args(["--rate", "0.25", "--n", "9", "--mode", "b", "--verbose", "--last", "--second", "5"])
    got = cli.values_from_args(a, Toy, Toy())
    assert got == {"rate": 0.25, "count": 9, "mode": "b", "verbose": True, "first": False, "pair": (1.0, 5.0)}
    assert dataclasses.replace(Toy(), **got).pair == (1.0, 5.0)
    assert cli.values_from_args(p.parse_args([]), Toy, Toy()) == {}  # nothing given: nothing overridden
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "c"])
    # without a preset behind them the options default to the fields' defaults
    d = toy_parser(from_preset=False).parse_args([])
    assert (d.rate, d.count, d.mode, d.verbose, d.first) == (0.5, 3, "a", False, True)


def test_a_new_recipe_field_becomes_an_option_of_every_recipe_script():
    Extra = dataclasses.make_dataclass(
        "Extra",
        [("momentum", float, field(default=0.0, metadata={"help": "a new knob"}))],
        bases=(Recipe,),
        frozen=True,
    )
    p = argparse.ArgumentParser()
    cli.add_dataclass_args(p, Extra)
    a = p.parse_args(["--momentum", "0.3", "--max-steps", "12"])
    assert cli.values_from_args(a, Extra, Extra()) == {"momentum": 0.3, "steps_per_sample": 12}


def test_every_recipe_layout_and_spec_field_is_an_option_of_progressive():
    import progressive

    p = argparse.ArgumentParser()
    progressive_parse = progressive.parse([])
    assert progressive_parse.recipe == cli.DEFAULT_PRESET
    cli.add_recipe_args(p)
    cli.add_layout_args(p)
    cli.add_run_args(p, out="x")
    cli.add_stage_args(p)
    dests = {a.dest for a in p._actions}
    nested = {"recipe", "layout", "parametrization"}  # a preset, a sub-dataclass, and derived from --low-dim
    for cls, skip in ((Recipe, set()), (Layout, set()), (CramSpec, nested)):
        for f in dataclasses.fields(cls):
            if f.name not in skip:
                assert "help" in f.metadata, f"{cls.__name__}.{f.name} has no command-line option"
                assert cli.option_dest(f) in dests
    for f in cli.option_fields(Recipe):  # the namespace of progressive has each one
        assert hasattr(progressive_parse, cli.option_dest(f))


COMMAND_LINES = [
    [],
    [
        "--recipe",
        "paper",
        "--lr",
        "0.05",
        "--beta2",
        "0.99",
        "--max-steps",
        "300",
        "--schedule-kind",
        "constant",
    ],
    ["--schedule", "geometric", "--min-len", "3", "--step", "2", "--batch-size", "4", "--seed", "3"],
    ["--recipe", "downstream", "--no-bos", "--bos-first", "--score-from-text", "--mem-tokens", "2"],
    ["--low-dim", "8", "--shared-projection", "--threshold", "0.99", "--init", "zeros", "--eps", "1e-6"],
    [
        "--recipe",
        "brittleness",
        "--hybrid-alpha",
        "0.5",
        "--align-layers",
        "4",
        "--leading-weight",
        "2",
        "--leading-count",
        "3",
        "--warmup",
        "5",
        "--min-lr",
        "0",
        "--weight-decay",
        "0",
        "--steps-per-stage",
        "7",
    ],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=lambda v: " ".join(v[:4]) or "defaults")
def test_progressive_command_lines_round_trip_through_config(argv):
    import progressive

    spec = cli.spec_from_args(progressive.parse(argv))
    again = CramSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_options_override_the_preset_and_nothing_else():
    import progressive

    spec = cli.spec_from_args(progressive.parse(COMMAND_LINES[1]))
    assert spec.recipe == PRESETS["paper"].with_(
        lr=0.05, betas=(0.9, 0.99), steps_per_sample=300, schedule="constant"
    )
    assert cli.spec_from_args(progressive.parse(["--recipe", "brittleness"])).recipe == PRESETS["brittleness"]
    s = cli.spec_from_args(progressive.parse(COMMAND_LINES[2]))
    assert (s.schedule, s.min_len, s.step, s.batch_size, s.seed) == ("geometric", 3, 2, 4, 3)
    s = cli.spec_from_args(progressive.parse(COMMAND_LINES[3]))
    assert s.layout == Layout(n_mem=2, bos=False, score_from="text", mem_first=False)
    s = cli.spec_from_args(progressive.parse(COMMAND_LINES[4]))
    assert (s.parametrization, s.low_dim, s.shared_projection) == ("low_dim", 8, True)
    assert (s.recipe.threshold, s.recipe.init, s.recipe.eps) == (0.99, "zeros", 1e-6)
    default = cli.spec_from_args(progressive.parse([]))
    assert default == CramSpec() and default.parametrization == "direct"
    # a script without stage options (full cramming) gets the spec's stage defaults
    import cram

    assert cli.spec_from_args(cram.parse(["--max-steps", "9"])) == CramSpec().with_(steps_per_sample=9)


def test_progressive_script_refreshes_the_results_folder(tmp_path):
    import progressive

    run, results = tmp_path / "runs" / "prog_t", tmp_path / "results"
    argv = [
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--data",
        "builtin",
        "--samples",
        "2",
        "--seq-len",
        "3",
        "--steps-per-stage",
        "20",
        "--max-steps",
        "60",
        "--batch-size",
        "2",
        "--no-progress",
        "--workers",
        "1",
        "--out",
        str(run),
    ]
    progressive.main(argv)
    assert not results.exists()  # without --results the results folder is not touched
    progressive.main([*argv, "--resume", "--results", str(results)])
    kept = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert kept == ["prog_t/config.json", "prog_t/rows.jsonl"]  # the rows once: no table/, no state
    assert (results / "prog_t" / "rows.jsonl").read_bytes() == (run / "rows.jsonl").read_bytes()
    from cramlens import load_run

    assert len(load_run(results / "prog_t").samples) == 2


def test_brittleness_table_with_greedy_in_both_dtypes(tmp_path):
    import progressive

    out = tmp_path / "b"
    argv = [
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--data",
        "builtin",
        "--samples",
        "2",
        "--seq-len",
        "6",
        "--recipe",
        "fast",
        "--steps-per-stage",
        "30",
        "--max-steps",
        "120",
        "--batch-size",
        "2",
        "--compare-full",
        "--full-max-steps",
        "20",
        "--greedy-dtype",
        "both",
        "--out",
        str(out),
        "--no-progress",
        "--workers",
        "1",
    ]
    progressive.main(argv)
    rows = json.loads((out / "brittleness.json").read_text())
    methods = {r["method"] for r in rows}
    assert methods == {
        f"{m} [greedy {d}]" for m in ("full @0.99", "progressive") for d in ("float32", "bfloat16")
    }
    assert {r["greedy_dtype"] for r in rows} == {"float32", "bfloat16"}
    # the same embeddings, teacher-forced in the model's dtype: TF does not depend on the greedy dtype
    tf = {(r["method"].split(" [")[0], r["sample_id"], r["greedy_dtype"]): r["tf_accuracy"] for r in rows}
    for (m, i, _d), v in tf.items():
        assert v == tf[(m, i, "float32")]
