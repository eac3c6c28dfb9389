"""Writing a plotly figure to disk: HTML that works offline, plus a PNG when kaleido can run a browser."""

from __future__ import annotations

import sys
from pathlib import Path

import plotly.graph_objects as go


def save_figure(fig: go.Figure, stem: str | Path, scale: float = 2) -> list[Path]:
    """Write ``<stem>.html`` (plotly.js copied beside it, no CDN) and ``<stem>.png``; returns the files written."""
    stem = Path(stem)
    if stem.suffix in (".html", ".png"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.parent / f"{stem.name}.html"
    fig.write_html(str(html), include_plotlyjs="directory", full_html=True)
    out = [html]
    png = stem.parent / f"{stem.name}.png"
    try:
        fig.write_image(str(png), scale=scale)
        out.append(png)
    except Exception as e:  # no Chrome-family browser for kaleido: the HTML is still there
        print(f"PNG export skipped for {png.name} ({type(e).__name__}); HTML written", file=sys.stderr)
    return out
