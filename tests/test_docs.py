"""The README is the way in and docs/ is the manual: the site builds strictly and no page is lost."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 400  # past this, reference moves to docs/ (house rule)
FIRST_SCREEN_LINES = 40
# a script or stylesheet fetched from another host: the pages would not work offline
REMOTE_ASSET = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//", re.IGNORECASE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def load_config(path: Path = REPO / "mkdocs.yml") -> dict:
    return yaml.safe_load(path.read_text())


def nav_pages(nav: list) -> list[str]:
    """Every Markdown file the nav names, depth first, sections flattened."""
    pages: list[str] = []
    for entry in nav:
        target = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(target, list):
            pages += nav_pages(target)
        elif not re.match(r"[a-z]+://", target):
            pages.append(target)
    return pages


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def copy_project(tmp_path: Path) -> tuple[Path, Path]:
    """mkdocs.yml and docs/ copied, so a test can break a page without touching the repository."""
    shutil.copytree(DOCS, tmp_path / "docs")
    config = tmp_path / "mkdocs.yml"
    shutil.copy(REPO / "mkdocs.yml", config)
    return config, tmp_path / "docs"


def test_the_site_builds_strictly_with_a_page_for_every_nav_entry_and_no_remote_assets(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"

    result = build(REPO / "mkdocs.yml", site)

    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    config = load_config()
    assert config.get("use_directory_urls") is False  # pages open from disk: cli.md -> cli.html
    pages = nav_pages(config["nav"])
    assert pages
    for page in pages:
        assert (site / page).with_suffix(".html").is_file(), page
    for html in site.rglob("*.html"):
        assert not REMOTE_ASSET.search(html.read_text()), f"{html.name} loads an asset from the network"


@pytest.mark.parametrize(
    ("page", "addition", "complaint"),
    [
        ("cli.md", "See [the gone page](no-such-page.md).\n", "no-such-page.md"),
        ("cli.md", "See [a gone section](segments.md#no-such-section).\n", "no-such-section"),
        ("orphan.md", "# A page nobody lists\n", "orphan.md"),
    ],
    ids=["broken-link", "broken-anchor", "page-not-in-nav"],
)
def test_the_strict_build_fails_on_a_broken_link_anchor_or_orphan_page(
    tmp_path: Path, page: str, addition: str, complaint: str
) -> None:
    config, docs = copy_project(tmp_path)
    with (docs / page).open("a") as f:
        f.write("\n" + addition)

    result = build(config, tmp_path / "site")

    assert result.returncode != 0, result.stderr
    assert complaint in result.stderr, result.stderr


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = (REPO / "README.md").read_text().splitlines()

    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference text to docs/"
    )
    first_screen = "\n".join(lines[:FIRST_SCREEN_LINES])
    assert "make demo" in first_screen and "make test" in first_screen


def test_readme_links_into_the_repository_resolve() -> None:
    readme = (REPO / "README.md").read_text()

    targets = [t for t in LINK.findall(readme) if not re.match(r"[a-z]+:|#", t)]

    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        assert (REPO / target.split("#")[0]).exists(), f"README.md links to missing {target}"


def test_every_docs_page_is_in_the_nav() -> None:
    pages = set(nav_pages(load_config()["nav"]))

    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}

    assert on_disk - pages == set(), "pages no reader can reach from the nav"
    assert pages - on_disk == set(), "nav entries without a page"
