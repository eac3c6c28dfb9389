"""make_figures end to end on synthetic runs (no model, no browser): HTML, README, skips of absent inputs, the PNG
fallback, and the offline HTML bundle (one ``plotly.min.js``). The analysis result files: test_make_figures_results.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_figures import BRITTLE, make_figures_script, synthetic_rows, write_run

from analyses.plots import registry as reg


def test_make_figures_writes_html_readme_and_skips_missing(tmp_path, capsys):
    main = make_figures_script().main

    runs, out = tmp_path / "runs", tmp_path / "fig"
    write_run(runs / "prog6", synthetic_rows())
    (runs / "prog6" / "brittleness.json").write_text(json.dumps(BRITTLE))
    main(["--out", str(out), "--runs", str(runs), "--results", str(tmp_path / "results"), "--no-png"])
    log = capsys.readouterr().out
    made = {
        "brittleness_table",
        "progressive_schematic",
        "token_explorer",
        "horizon_ig",
        "pca_trajectories",
        "pca99_vs_length",
        "surprisal_vs_steps",
    }
    for name in made:
        html = (out / f"{name}.html").read_text()
        assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html and 'src="http' not in html, name
        assert not (out / f"{name}.png").exists()
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    readme = (out / "README.md").read_text()
    for name in made:
        assert f"**{name}** [html]({name}.html)" in readme
    assert f"`{runs / 'prog6'}`" in readme and "scripts/progressive.py" in readme
    # absent inputs: one line each, naming what is missing and the command that makes it
    assert (
        f"skip pca_reconstruction: {tmp_path / 'results'}/trajectory/trajectory.json is absent; make it with: "
        "python scripts/trajectory.py" in log
    )
    assert "skip solution_diversity: 0 " in log and "scripts/diversity.py run" in log
    assert "skip depth_heatmap: no " in log
    waiting = readme.split("## Waiting for inputs")[1]
    assert "| pca_reconstruction |" in waiting and "| knockout_cumulative |" in waiting
    assert "made token_explorer" in log


def test_make_figures_without_any_run_skips_everything(tmp_path, capsys):
    main = make_figures_script().main

    # --results too: the repository's own figures/<analysis>/ result files must not leak in
    main(
        [
            "--out",
            str(tmp_path / "f"),
            "--runs",
            str(tmp_path / "none"),
            "--results",
            str(tmp_path / "none"),
            "--no-png",
        ]
    )
    log = capsys.readouterr().out
    assert (
        f"skip token_explorer: run directory {tmp_path / 'none' / 'prog6'} is absent; make it with: python "
        "scripts/progressive.py" in log
    )
    assert "0 figures" in log and (tmp_path / "f" / "README.md").exists()


def test_png_failure_warns_once_stops_the_server_and_keeps_html(tmp_path, capsys, monkeypatch):
    import kaleido
    import plotly.graph_objects as go

    import analyses.plots.io as fio

    mf = make_figures_script()
    started, stopped = [], []
    monkeypatch.setattr(fio, "find_browser", lambda: "/usr/bin/some-browser")
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **k: started.append(1))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **k: stopped.append(1))

    def boom(*a, **k):
        raise RuntimeError("browser crashed")

    monkeypatch.setattr(go.Figure, "write_image", boom)
    write_run(tmp_path / "runs" / "prog6", synthetic_rows())
    specs = [reg.get("horizon_ig"), reg.get("token_explorer")]
    with fio.PngExport(True, 1.0) as png:
        made, skipped = mf.make(
            specs, reg.Sources(tmp_path / "runs", tmp_path), tmp_path / "f", png, log=lambda s: None
        )
    err = capsys.readouterr().err
    assert err.count("PNG export off") == 1 and "browser crashed" in err
    # started, stopped on the first failure, restarted for the one retry, stopped again; not again on close
    assert started == [1, 1] and stopped == [1, 1]
    assert len(made) == 2 and not skipped
    assert all(len(files) == 1 and files[0].suffix == ".html" and files[0].exists() for _, _, files in made)


def test_a_first_png_failure_restarts_the_server_and_retries_once(tmp_path, capsys, monkeypatch):
    import kaleido
    import plotly.graph_objects as go

    import analyses.plots.io as fio

    started, stopped, calls = [], [], []
    monkeypatch.setattr(fio, "find_browser", lambda: "/usr/bin/some-browser")
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **k: started.append(1))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **k: stopped.append(1))

    def flaky(self, path, **k):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined")
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(go.Figure, "write_image", flaky)
    with fio.PngExport(True, 1.0) as png:
        assert png.write(go.Figure(), tmp_path / "a.png")
        assert png.write(go.Figure(), tmp_path / "b.png")
    assert (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()
    assert "PNG export off" not in capsys.readouterr().err
    assert started == [1, 1] and stopped == [1, 1]  # one restart, then the server stops on close


@pytest.mark.timeout(60)
def test_without_a_browser_no_server_starts_and_figures_finish_as_html(
    tmp_path, capsys, monkeypatch, no_browser
):
    import kaleido
    import plotly.graph_objects as go

    import analyses.plots.io as fio

    assert not no_browser.exists() and fio.find_browser() is None
    monkeypatch.setattr(
        kaleido, "start_sync_server", lambda **k: pytest.fail("server started without a browser")
    )
    # the whole make_figures path, PNG export requested
    write_run(tmp_path / "runs" / "prog6", synthetic_rows())
    mf = make_figures_script()
    mf.main(
        [
            "--out",
            str(tmp_path / "f"),
            "--runs",
            str(tmp_path / "runs"),
            "--results",
            str(tmp_path / "none"),
            "--only",
            "horizon_ig",
            "token_explorer",
        ]
    )
    err = capsys.readouterr().err
    assert err.count("PNG export off (no Chrome-family browser found)") == 1, err
    assert (tmp_path / "f" / "horizon_ig.html").exists() and not list((tmp_path / "f").glob("*.png"))
    # and save_figure, twice in one process: one warning, HTML each time, no PNG
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    assert fio.save_figure(fig, tmp_path / "a") == [tmp_path / "a.html"]
    assert fio.save_figure(fig, tmp_path / "b") == [tmp_path / "b.html"]
    assert capsys.readouterr().err.count("PNG export off") == 1


def test_analysis_figures_are_written_for_offline_viewing(tmp_path):
    import plotly.graph_objects as go

    from analyses.plots.io import save_figure

    files = save_figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), tmp_path / "sub" / "fig.html")
    assert files[0] == tmp_path / "sub" / "fig.html"
    html = files[0].read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html
    assert (tmp_path / "sub" / "plotly.min.js").exists()


def test_subfolder_figures_share_the_one_bundle_above(tmp_path):
    import plotly.graph_objects as go

    from analyses.plots.io import save_figure, write_html

    write_html(go.Figure(), tmp_path / "top.html")
    files = save_figure(go.Figure(go.Scatter(x=[0], y=[1])), tmp_path / "knockout" / "fig")
    assert 'src="../plotly.min.js"' in files[0].read_text()
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("plotly.min.js")] == ["plotly.min.js"]
