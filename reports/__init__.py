"""Leaderboards and the IRNet-versus-baselines comparison, read back from a benchmark's MLflow store.

collect (MLflow -> frames, validation) -> stats (ranks, fold-level and per-row paired tests), scaling (power
laws and the crossover of a scaling study) -> plots, matbench_export -> document (sections) -> render
(Markdown, HTML) ; build is the command: ``python -m reports.build --out DIR``.
"""
