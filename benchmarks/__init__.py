"""Benchmarks of the pipeline's stages, each against a naive or plain-TRL way on the same inputs.

Run with ``scripts/bench.sh`` (``python -m benchmarks.run [--quick] [--only NAME]``); not part of the
default test run. Results: ``benchmarks/results/latest.json`` and ``latest.md``.
"""
