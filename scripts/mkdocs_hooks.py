"""MkDocs hooks for the documentation site (mkdocs.yml): the README is the site's home page, and Sphinx roles left
in docstrings render as plain code.

The README links into docs/ from the repository root (``docs/results.md``), as GitHub shows it; on the site it
is ``index.md`` inside docs/, so those links lose their ``docs/`` prefix. The pages under docs/ link the README as
GitHub sees it (``../../README.md#set-up``), which on the site is that ``index.md``. Said once, read in both places.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

README = Path(__file__).resolve().parent.parent / "README.md"
# ](docs/x) in a link or an image of the README; it links nothing else in the repository.
DOCS_LINK = re.compile(r"\]\(docs/")
# ](../README.md...) or ](../../README.md...) in a page under docs/: one "../" more than the page's depth.
README_LINK = re.compile(r"\]\(((?:\.\./)+)README\.md")
# :class:`x`, :func:`x`, ... in a docstring, which mkdocstrings renders as ":class:<code>x</code>".
SPHINX_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):(?=<code>)")


def on_files(files: Files, config: Any) -> Files:
    text = DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files


def on_page_markdown(markdown: str, page: Page, **kwargs: Any) -> str:
    return README_LINK.sub(lambda m: "](" + m.group(1)[3:] + "index.md", markdown)


def on_page_content(html: str, **kwargs: Any) -> str:
    return SPHINX_ROLE.sub("", html)
