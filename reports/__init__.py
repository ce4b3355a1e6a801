"""Leaderboards and the IRNet-versus-baselines comparison, read back from a benchmark's MLflow store.

collect (MLflow -> frames, validation) -> stats (ranks, paired tests) -> plots, matbench_export -> document
(sections) -> render (Markdown, HTML) ; build is the command: ``python -m reports.build --out DIR``.
"""
