"""README's "Where to find each behaviour" table points at files, folders and doc
sections that exist, so a newcomer following it never lands on a moved module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_FILE = re.compile(r"\.(py|sql|md|json|js|css|html)$")


def _rows() -> list[list[str]]:
    table = README.read_text().split("\n## Where to find each behaviour\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| behaviour ")]
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines]


def _missing_paths(cell: str) -> list[str]:
    """Backticked paths of a cell that do not exist; a bare name (``runner.py``, ``static/``)
    is looked for in the folder of the path before it (``consumers/checkins/``)."""
    missing, folder = [], ROOT
    for token in re.findall(r"`([^`]+)`", cell):
        if " " in token or token.startswith(("/", "-", "CRONPIPE_")) or not ("/" in token or _FILE.search(token)):
            continue  # a command, a URL path, a variable or a name in prose
        path = ROOT / token if (ROOT / token).exists() else folder / token
        if not path.exists():
            missing.append(token)
            continue
        folder = path if path.is_dir() else path.parent
    return missing


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _missing_links(cell: str) -> list[str]:
    missing = []
    for target in re.findall(r"\]\(([^)]+)\)", cell):
        name, _, anchor = target.partition("#")
        document = ROOT / name if name else README
        if not document.is_file():
            missing.append(target)
        elif anchor and anchor not in {_anchor(h) for h in re.findall(r"^#+ (.*)$", document.read_text(), re.M)}:
            missing.append(target)
    return missing


def test_the_map_has_a_row_for_each_part_of_the_tree() -> None:
    code = " ".join(row[1] for row in _rows())
    for package in ("schemas/", "ingest/", "consumers/", "api/", "notifier/", "cronpipe/"):
        assert f"`{package}" in code, package


def test_every_path_in_the_map_exists() -> None:
    assert {row[0]: _missing_paths(row[1]) for row in _rows() if _missing_paths(row[1])} == {}


def test_every_link_in_the_map_leads_to_a_document_and_section_that_exist() -> None:
    assert [link for row in _rows() for cell in row for link in _missing_links(cell)] == []
