"""Writing a plotly figure to disk: HTML that works offline, plus a PNG when kaleido can run a browser.

Static export goes through one object, :class:`PngExport`. kaleido 1.x drives a Chrome-family browser; its global
sync server, once started without one, leaves the next ``write_image`` waiting forever on a queue nobody serves.
So the browser is looked up first (the same lookup kaleido's browser layer, choreographer, does: ``BROWSER_PATH``,
then ``PATH``, then the usual install locations), the server is started only when one exists, and any failure
stops the server and turns PNG export off with one warning line; HTML is always written.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import plotly.graph_objects as go

INSTALL_HINT = (
    "install a Chrome-family browser for PNGs (Debian: `apt-get install -y chromium`, or `make figures`)"
)


def find_browser() -> str | None:
    """The executable kaleido would start, or None when there is none (a path that is not executable counts as none)."""
    try:
        from choreographer.browsers.chromium import Chromium
    except (
        ImportError
    ):  # kaleido < 1.0 bundled its own renderer; without choreographer there is nothing to find
        return None
    try:
        path = Chromium.find_browser(skip_local=False)
    except Exception:  # a broken lookup is "no browser", never a crash in figure writing
        return None
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


class PngExport:
    """PNG writing through one kaleido server; the first failure (or no browser) disables it with one warning line."""

    def __init__(self, enabled: bool = True, scale: float = 2.0):
        self.enabled, self.scale, self.server, self.reason = enabled, scale, False, ""

    def _disable(self, reason: str) -> None:
        self.enabled, self.reason = False, reason
        self.close()
        print(f"warning: PNG export off ({reason}); HTML written. {INSTALL_HINT}", file=sys.stderr)

    def _start(self) -> bool:
        if self.server:
            return True
        if find_browser() is None:
            self._disable("no Chrome-family browser found")
            return False
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        self.server = True
        return True

    def write(self, fig: go.Figure, path: str | Path, scale: float | None = None) -> bool:
        """Write ``path`` as PNG; False (and nothing written) when export is off or fails twice."""
        if not self.enabled:
            return False
        for attempt in (1, 2):
            try:
                if not self._start():
                    return False
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fig.write_image(str(path), scale=scale or self.scale)
                return True
            except Exception as e:  # the browser failed to start or render: keep going with HTML only
                if attempt == 1 and self.server:
                    # once, right after `apt-get install chromium`, the first page of a new server failed with
                    # "kaleido_scopes is not defined" and the same command then worked: restart and retry once
                    self.close()
                    continue
                first = str(e).splitlines()[0][:160] if str(e) else ""
                self._disable(f"{type(e).__name__}: {first}".rstrip(": "))
        return False

    def close(self) -> None:
        """Stop the kaleido server if this object started it (safe to call twice)."""
        if not self.server:
            return
        self.server = False
        try:
            import kaleido

            kaleido.stop_sync_server(silence_warnings=True)
        except Exception:  # a server whose browser already died has nothing left to stop
            pass

    def __enter__(self) -> PngExport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default_export: PngExport | None = None


def default_export() -> PngExport:
    """The process-wide exporter used by :func:`save_figure` (one browser lookup, one warning per process)."""
    global _default_export
    if _default_export is None:
        import atexit

        _default_export = PngExport()
        atexit.register(_default_export.close)
    return _default_export


BUNDLE = "plotly.min.js"


def bundle_for(path: str | Path) -> Path:
    """The one ``plotly.min.js`` an HTML file at ``path`` uses: the one in its folder or in the folder above (so
    ``figures/<analysis>/*.html`` share ``figures/plotly.min.js``); else a new one beside it."""
    d = Path(path).parent
    return next((b for b in (d / BUNDLE, d.parent / BUNDLE) if b.is_file()), d / BUNDLE)


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """HTML that works offline, referencing the shared ``plotly.min.js`` (see :func:`bundle_for`) by a relative path;
    the bundle is written once when absent. Both writes are atomic."""
    from plotly.offline import get_plotlyjs

    from cramlens.runs import atomic_write_text

    path = Path(path)
    bundle = bundle_for(path)
    if not bundle.is_file():
        atomic_write_text(bundle, get_plotlyjs())
    src = os.path.relpath(bundle, path.parent).replace(os.sep, "/")
    atomic_write_text(path, fig.to_html(include_plotlyjs=src, full_html=True))
    return path


def save_figure(
    fig: go.Figure, stem: str | Path, scale: float | None = None, png: PngExport | None = None
) -> list[Path]:
    """Write ``<stem>.html`` (plotly.js beside it, no CDN) and, when a browser is there, ``<stem>.png``."""
    stem = Path(stem)
    if stem.suffix in (".html", ".png"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [write_html(fig, stem.parent / f"{stem.name}.html")]
    path = stem.parent / f"{stem.name}.png"
    if (png or default_export()).write(fig, path, scale):
        out.append(path)
    return out
