"""The project documents itself: docs/ ships with it, and every citation points into it.

Citations take the form ``docs/<page>.md`` or ``docs/<page>.md, <Heading>`` (the heading written out as in the
page, or its part before " (", e.g. "Images" for "Images (clips of one frame)"; a line break inside a
citation is allowed). Pure file reading, no imports of dastc.
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("method", "benchmarks", "decisions")

SKIP_DIRS = {".git", ".venv", "outputs", "data", "results", "__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".png", ".jpg", ".jpeg", ".gif", ".mp4", ".npy", ".pt", ".pth", ".ckpt"}

# Documents that live outside the repository: users never see them. (Spelt in pieces so that this file does
# not cite them itself.)
_UNSHIPPED_METHOD = re.compile(r"(?<!docs/)\bmethod\.md")
_OUTSIDE = [
    re.escape(name) for name in ("../" + "shared", "DESIGN" + ".md", "peers" + ".md", "ecosystem" + ".md")
]
UNSHIPPED = re.compile("|".join(_OUTSIDE))

CITATION = re.compile(r"(?<![\w/.-])docs/([\w-]+)\.md")
# A citation's rest of text, with line breaks, indentation and comment markers between lines collapsed.
LINE_BREAK = re.compile(r"[ \t]*\n[ \t]*(?:(?:#|//)+[ \t]*)?")


def project_files() -> list[Path]:
    """Every text file of the project (not this test, generated folders, binaries or virtual environments)."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(names):
            path = Path(folder) / name
            if path.suffix in SKIP_SUFFIXES or path == Path(__file__).resolve() or not path.is_file():
                continue
            if b"\0" in path.read_bytes()[:8192]:
                continue  # binary
            files.append(path)
    return files


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def headings(page: str) -> list[str]:
    """The markdown headings of docs/<page>.md (outside code blocks), as written."""
    found, fenced = [], False
    for line in text_of(DOCS / f"{page}.md").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+?)\s*$", line)):
            found.append(match.group(1))
    return found


def cited_heading_is_known(rest: str, known: list[str]) -> bool:
    """Whether ``rest`` (the text after ``docs/<page>.md, ``) starts with one of the page's headings."""
    rest = rest.lstrip("\"'`")
    names = set(known) | {h.split(" (")[0] for h in known}
    return any(rest.startswith(name) and not rest[len(name) : len(name) + 1].isalnum() for name in names)


@pytest.fixture(scope="module")
def files() -> dict[Path, str]:
    return {path: text_of(path) for path in project_files()}


def test_the_documentation_pages_exist_with_their_sections():
    for page in PAGES:
        assert (DOCS / f"{page}.md").is_file(), f"docs/{page}.md is missing"
    method = headings("method")
    for section in (
        "Model (ACCEL on DeepLab-v2)",
        "Optimisation",
        "TPS (stage 1)",
        "DA-STC teacher and stage 2",
        "Image-sequence fusion",
        "Shallow-feature fusion",
        "Rare-class pasting",
        "Category-aware alignment",
        "Total loss",
        "Output geometry",
        "Images (clips of one frame)",
    ):
        assert section in method, f"docs/method.md has no section {section!r}"
    for page in PAGES:
        names = headings(page)
        assert len(names) == len(set(names)), (
            f"docs/{page}.md repeats a heading: citations would be ambiguous"
        )


def test_no_file_cites_a_document_that_does_not_ship(files):
    offences = []
    for path, text in files.items():
        for number, line in enumerate(text.splitlines(), 1):
            if _UNSHIPPED_METHOD.search(line) or UNSHIPPED.search(line):
                offences.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offences, "cites a document users never see (cite docs/<page>.md instead):\n" + "\n".join(
        offences
    )


def test_every_cited_page_and_heading_exists(files):
    known = {page.stem: headings(page.stem) for page in DOCS.glob("*.md")}
    offences = []
    for path, text in files.items():
        for match in CITATION.finditer(text):
            page, where = (
                match.group(1),
                f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}",
            )
            if page not in known:
                offences.append(f"{where}: docs/{page}.md does not exist")
                continue
            rest = text[match.end() : match.end() + 300]
            if not rest.startswith(", "):
                continue  # the page as a whole
            rest = LINE_BREAK.sub(" ", rest[2:])
            if not cited_heading_is_known(rest, known[page]):
                offences.append(f"{where}: docs/{page}.md has no heading at the start of {rest[:60]!r}")
    assert not offences, "citations that lead nowhere:\n" + "\n".join(offences)


def test_the_citation_check_catches_what_it_should():
    method = headings("method")
    assert cited_heading_is_known("Optimisation); heads at 10x", method)
    assert cited_heading_is_known('"Images"): the teacher', method)
    assert cited_heading_is_known("Model (ACCEL on DeepLab-v2)", method)
    assert not cited_heading_is_known("section 4", method)
    assert not cited_heading_is_known("Optimisations", method)
    assert _UNSHIPPED_METHOD.search("see method" + ".md section 4")
    assert not _UNSHIPPED_METHOD.search("see docs/method.md, Optimisation")
