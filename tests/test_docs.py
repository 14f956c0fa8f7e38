"""The docs run: every Python block in docs/ and the README executes, every relative link
resolves."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))]


@pytest.mark.parametrize("page,index,block", BLOCKS,
                         ids=[f"{p.name}[{i}]" for p, i, _ in BLOCKS])
def test_python_blocks_run(page, index, block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # blocks that write files write here
    exec(compile(block, f"{page.name}[{index}]", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    text = page.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) + re.findall(r'src="([^"]+)"', text)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        assert (page.parent / link).exists(), f"{page.name}: broken link {link}"


def test_every_docs_page_is_present():
    names = {p.name for p in PAGES}
    assert {"index.md", "getting-started.md", "language.md", "gallery.md", "generated-code.md",
            "python-api.md", "cli.md", "architecture.md"} <= names
