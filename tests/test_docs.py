"""The operator docs stay true to the code: each setting with its default, no dead links."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from session_server.settings import ServerSettings

REPO = Path(__file__).resolve().parent.parent
CONFIGURATION = REPO / "docs" / "configuration.md"


def documented_rows() -> dict[str, str]:
    """Each table row of configuration.md, by the variable it documents."""
    rows = {}
    for line in CONFIGURATION.read_text().splitlines():
        match = re.match(r"\| `(TWM_SERVER_[A-Z_]+)` \|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_configuration_doc_lists_exactly_the_server_settings() -> None:
    expected = {f"TWM_SERVER_{name.upper()}" for name in ServerSettings.model_fields}

    assert set(documented_rows()) == expected


def test_configuration_doc_gives_each_settings_default() -> None:
    rows = documented_rows()
    for name, field in ServerSettings.model_fields.items():
        row = rows[f"TWM_SERVER_{name.upper()}"]
        default_cell = row.split("|")[2]
        if field.default is None:
            assert "unset" in default_cell, row
        elif field.default is not PydanticUndefined:
            assert f"`{field.default}`" in default_cell, row
        elif field.default_factory is list:
            assert "`[]`" in default_cell, row


def test_readme_and_docs_links_point_at_files_that_exist() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    opening = (REPO / "README.md").read_text().split("## ", 1)[0]

    assert "./scripts/demo" in opening
    assert "./scripts/test" in opening
    assert (REPO / "scripts" / "demo").stat().st_mode & 0o111
    assert (REPO / "scripts" / "test").stat().st_mode & 0o111
