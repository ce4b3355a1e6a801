"""A report as a list of blocks, rendered to Markdown (images beside it) or to one self-contained HTML file.

Both renderings come from the same blocks, so the two files always say the same thing.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    """A paragraph of plain text (escaped in HTML); ``note`` renders it smaller and muted."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    # Row indices shown muted (published reference rows) and numeric columns right-aligned.
    muted_rows: frozenset[int] = field(default_factory=frozenset)
    align_right: frozenset[int] = field(default_factory=frozenset)
    collapsed: bool = False  # HTML: folded under its caption (long tables such as provenance)


@dataclass(frozen=True)
class Figure:
    filename: str  # written beside leaderboard.md
    png: bytes
    caption: str


Block = Heading | Para | Table | Figure


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures are linked as relative PNG files."""
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * max(2, min(block.level, 6)) + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [f"_{block.text}_" if block.note else block.text, ""]
        elif isinstance(block, Table):
            if block.caption:
                out += [f"**{block.caption}**", ""]
            out.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
            out.append(
                "|" + "|".join("---:" if i in block.align_right else "---" for i in range(len(block.columns))) + "|"
            )
            for row in block.rows:
                out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.filename})", "", f"_{block.caption}_", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1180px; margin: 24px auto;
       padding: 0 16px; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: 6px; }
h2 { font-size: 1.35em; margin-top: 2em; border-bottom: 1px solid #e5e5e5; padding-bottom: 4px; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 8px 0 18px; font-size: 0.88em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.muted td { color: #6a6a6a; background: #fafafa; font-style: italic; }
tbody tr:hover td { background: #fff8e1; }
p.note { color: #555; font-size: 0.88em; }
figure { margin: 10px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
details { margin: 8px 0 18px; }
summary { cursor: pointer; font-weight: 600; }
.mono, td code { font-family: SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
"""


def to_html(title: str, blocks: list[Block]) -> str:
    """One HTML file with inline CSS and the figures embedded as base64 PNG: no external assets."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            level = max(2, min(block.level, 6))
            anchor = f' id="{esc(block.anchor)}"' if block.anchor else ""
            out.append(f"<h{level}{anchor}>{esc(block.text)}</h{level}>")
        elif isinstance(block, Para):
            out.append(f'<p class="note">{esc(block.text)}</p>' if block.note else f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            if block.collapsed:
                out.append(f"<details><summary>{esc(block.caption or 'table')} ({len(block.rows)} rows)</summary>")
            out.append("<table>")
            if block.caption and not block.collapsed:
                out.append(f"<caption>{esc(block.caption)}</caption>")
            out.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in block.columns) + "</tr></thead><tbody>")
            for i, row in enumerate(block.rows):
                cls = ' class="muted"' if i in block.muted_rows else ""
                cells = "".join(
                    f'<td class="num">{esc(c)}</td>' if j in block.align_right else f"<td>{esc(c)}</td>"
                    for j, c in enumerate(row)
                )
                out.append(f"<tr{cls}>{cells}</tr>")
            out.append("</tbody></table>")
            if block.collapsed:
                out.append("</details>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            out.append(
                f'<figure><img alt="{esc(block.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(block.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
