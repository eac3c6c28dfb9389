"""Knockout figures and tables on synthetic sweep summaries (no model): both masks drawn beside each other, a
text-only summary drawn as before, tables with a column per mask, the accuracies' intervals and the paired test."""

from __future__ import annotations


def sweep_summary(masks=("text",), n_layers=3, control=True) -> dict:
    """A knockout summary with distinct accuracies per condition (``analyses.knockout.summarize_sweep``'s keys)."""
    from analyses.knockout import conditions

    out = {}
    for i, c in enumerate(conditions(n_layers, masks=masks, control=control)):
        out[c.name] = {"n": 20, "acc": 20.0 + i, "tf": 0.5 + i / 100, "tf_exact": 10.0, "ce_ctx": 1.0}
    return out


def test_knockout_figures_draw_both_masks_beside_each_other():
    from analyses.plots.eval_figures import knockout_figure, per_layer_figure

    s = sweep_summary(("text", "reference"))
    fig = knockout_figure(s, 3, "m")
    names = [t.name for t in fig.data]
    assert names == [
        "forward (text mask)",
        "forward (reference mask)",
        "reverse (text mask)",
        "reverse (reference mask)",
        "control forward (text mask)",
        "control forward (reference mask)",
    ]
    fwd_text, fwd_ref = fig.data[0], fig.data[1]
    assert (
        fwd_text.line.color == fwd_ref.line.color
        and fwd_ref.line.dash == "dash"
        and fwd_text.line.dash is None
    )
    assert list(fwd_ref.y) == [s["cram"]["acc"], *(s[f"forward:{k}@reference"]["acc"] for k in (1, 2, 3))]
    assert list(fwd_text.y)[1:] == [s[f"forward:{k}"]["acc"] for k in (1, 2, 3)]
    assert "reference mask" in fig.layout.title.text
    tf = knockout_figure(s, 3, "m", "tf")
    assert len(tf.data) == 4  # the controls have no TF curve
    per = per_layer_figure(s, [1.0, 2.0, 3.0], 3, "m")
    assert [t.name for t in per.data if "reference" in (t.name or "")] == [
        "HellaSwag acc (%) (reference mask)",
        "TF reconstruction (%) (reference mask)",
        "control acc (%) (reference mask)",
    ]
    assert list(per.data[3].y) == [s[f"per_layer:{k}@reference"]["acc"] for k in range(3)]


def test_knockout_figures_of_a_text_only_summary_render_as_before():
    from analyses.plots.eval_figures import knockout_figure, per_layer_figure

    s = sweep_summary()
    fig = knockout_figure(s, 3, "m")
    assert [t.name for t in fig.data] == ["forward", "reverse", "control forward"]
    assert [t.line.dash for t in fig.data] == [None, None, "dot"]
    assert all(t.line.color is None for t in fig.data)  # plotly's default colours, as before
    assert fig.layout.title.text == "m: HellaSwag accuracy (%) vs layers knocked out"
    per = per_layer_figure(s, [1.0, 2.0, 3.0], 3, "m")
    assert [t.name for t in per.data] == [
        "HellaSwag acc (%)",
        "TF reconstruction (%)",
        "control acc (%)",
        "attention mass (%)",
    ]
    assert per.layout.title.text == "m: per-layer knockout"


def test_sweep_tables_get_columns_per_mask_with_intervals_and_the_paired_test():
    from analyses.plots.eval_figures import sweep_markdown, sweep_table

    s = sweep_summary(("text", "reference"))
    s["forward:1"]["vs_cram"] = {"a_only": 1, "b_only": 8, "p": 0.0390625, "n": 20}
    md = sweep_markdown(s, 3, [0, 1])
    header, _, k0, k1 = md.splitlines()[:4]
    assert "forward acc (text)" in header and "forward acc (reference)" in header
    assert "control-forward vs cram (reference)" in header
    cells = [c.strip() for c in k1.strip("|").split("|")]
    cols = [c.strip() for c in header.strip("|").split("|")]
    acc = s["forward:1"]["acc"]
    assert cells[cols.index("forward acc (text)")].startswith(f"{acc:.1f} [")
    assert cells[cols.index("forward vs cram (text)")] == "+8/-1 p=0.0391"
    assert cells[cols.index("forward acc (reference)")].startswith(f"{s['forward:1@reference']['acc']:.1f} [")
    assert "reference mask:" in md
    text_only = sweep_markdown(sweep_summary(), 3, [1])
    assert "(text)" not in text_only and "reference" not in text_only
    t = sweep_table(s, 3, "t")
    assert len(t.columns) == 1 + 2 * (3 + 3 + 3 + 2)  # k, then per mask: forward, reverse, per-layer, control
    assert len(sweep_table(sweep_summary(), 3, "t").columns) == 1 + 3 + 3 + 3 + 2


def test_a_reference_only_sweep_says_which_mask_it_shows():
    from analyses.plots.eval_figures import knockout_figure, sweep_markdown

    s = sweep_summary(("reference",), control=False)
    fig = knockout_figure(s, 3, "m")
    assert [t.name for t in fig.data] == ["forward (reference mask)", "reverse (reference mask)"]
    assert fig.data[0].line.dash == "dash" and "reference mask:" in fig.layout.title.text
    assert "forward acc (reference)" in sweep_markdown(s, 3, [1])
