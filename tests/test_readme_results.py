"""README.md's measured tables agree with their raw outputs under results/ (scripts/readme_tables.py)."""

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture
def tables(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("readme_tables")


def test_the_readme_tables_are_the_ones_results_gives(tables):
    assert tables.main(["--check"]) == 0


def test_a_figure_edited_by_hand_is_caught(tables):
    text = tables.README.read_text()
    edited = text.replace("| `dastc` | **72.12", "| `dastc` | **74.12", 1)
    assert edited != text
    _, changed = tables.rebuild(edited)
    assert changed == ["toy_methods"]
    assert tables.rebuild(text)[1] == []
    sys.modules.pop("readme_tables", None)
