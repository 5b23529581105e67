"""Reproducible benchmarks (see /work/shared/BENCHMARKS.md and bench/README.md).

Each benchmark is one module in this package that decorates its entry point with
`bench.harness.register`; `python -m bench --list` shows them.
"""
