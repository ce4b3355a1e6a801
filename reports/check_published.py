"""Check the published reports: every export committed under docs/results/ rebuilds its report exactly.

    python -m reports.check_published [ROOT]        # ROOT defaults to docs/results

An export (:mod:`reports.export`) is found by its manifest (``irnet-bench-export.json``); its report is the
folder above it (``docs/results/quick/export/`` -> ``docs/results/quick/``). For each, the report is rebuilt
from the export in memory (as ``python -m reports.build --export``) and its ``leaderboard.csv`` and
``leaderboard.md`` are compared byte for byte with the committed ones. Exit 0 when all match; 1 with one line
naming the first file that differs; 2 on an export that cannot be read, and on a folder that is missing or holds no
export (a check that finds nothing would pass whatever moved the published results away).
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.cli import ArgumentParser, main_guard
from benchmarks.errors import UsageError
from reports.build import report_of
from reports.export import MANIFEST, load_export

CHECKED = ("leaderboard.csv", "leaderboard.md")


def exports_under(root: Path) -> list[Path]:
    """Folders under ``root`` that hold an export, sorted."""
    return sorted(manifest.parent for manifest in root.rglob(MANIFEST))


def first_difference(export: Path) -> str | None:
    """None when the report beside ``export`` is what the export rebuilds, else a line naming the first file that
    differs (and its first differing line) and how to remake it."""
    files = report_of(load_export(export)).files
    report = export.parent
    for name in CHECKED:
        committed = report / name
        fix = f"rebuild it: python -m reports.build --export {export} --out {report}"
        if not committed.is_file():
            return f"{committed} is missing beside the export {export}; {fix}"
        old, new = committed.read_bytes(), files[name]
        if old != new:
            old_lines, new_lines = old.splitlines(), new.splitlines()
            line = next(
                (i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False)) if a != b),
                min(len(old_lines), len(new_lines)),
            )
            return f"{committed} differs from the report rebuilt from {export} (first at line {line + 1}); {fix}"
    return None


def run(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m reports.check_published", description=__doc__.split("\n")[0])
    parser.add_argument(
        "root", nargs="?", type=Path, default=Path("docs/results"), help="where to look (default docs/results)"
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise UsageError(
            f"check_published: {args.root} is not a folder; expected the folder of the published reports, each "
            f"with its export (export/{MANIFEST})"
        )
    exports = exports_under(args.root)
    if not exports:
        raise UsageError(
            f"check_published: no export under {args.root}, so nothing was checked; expected published reports, "
            f"each with its export (export/{MANIFEST})"
        )
    for export in exports:
        problem = first_difference(export)
        if problem:
            print(f"check_published: {problem}", file=sys.stderr)
            return 1
    print(f"check_published: {len(exports)} export(s) under {args.root} rebuild their committed reports exactly")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit 2."""
    return main_guard(run, argv)


if __name__ == "__main__":
    sys.exit(main())
