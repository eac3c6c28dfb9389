"""The README's findings block is the ledger's findings.md, rewritten by one function and checked against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyses.ledger.readme import BEGIN, END, quoted, splice, update_readme
from cramlens.errors import CramlensError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)


def test_splice_replaces_only_the_block_and_is_idempotent(tmp_path):
    readme = f"# title\n\nbefore\n\n{BEGIN.format(source='old/findings.md')}\nstale table\n{END}\n\nafter\n"
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "results" / "ledger").mkdir(parents=True)
    (tmp_path / "results" / "ledger" / "findings.md").write_text(
        "| claim | verdict |\n|---|---|\n| a | holds |\n"
    )
    update_readme(tmp_path / "README.md", tmp_path / "results" / "ledger" / "findings.md", root=tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith(f"{END}\n\nafter\n")
    assert "stale table" not in text
    assert quoted(text) == ("results/ledger/findings.md", "| claim | verdict |\n|---|---|\n| a | holds |")
    assert (
        splice(text, "| claim | verdict |\n|---|---|\n| a | holds |\n", "results/ledger/findings.md") == text
    )


def test_a_readme_without_the_block_is_one_clear_error_whose_two_lines_then_work():
    with pytest.raises(CramlensError, match="no ledger findings block") as err:
        splice("# README\n", "table", "results/ledger/findings.md")
    markers = str(err.value).split("go (one line or two): ")[1]  # what the message says to insert, as given
    readme = "# README\n\n" + markers + "\n\nmore\n"
    assert quoted(readme) == ("results/ledger/findings.md", "")
    filled = splice(readme, "| claim | verdict |", "results/ledger/findings.md")
    assert quoted(filled) == ("results/ledger/findings.md", "| claim | verdict |")
    assert filled.endswith("\n\nmore\n")


def test_the_committed_readme_quotes_the_committed_ledger():
    """When README.md carries a findings block, it is exactly the findings.md it names (regenerate with
    scripts/reproduce.py --readme README.md after a ledger changes)."""
    block = quoted((ROOT / "README.md").read_text())
    assert block is not None, "README.md lost its ledger findings block"
    source, body = block
    assert (ROOT / source).is_file(), f"README quotes {source}, which is not committed"
    assert body == (ROOT / source).read_text().strip()
