"""Benchmarks of bis-assets: load, extract, transform, memory and many accounts.

``python -m bench`` runs them all and writes ``bench/results/latest.md``;
``python -m bench --quick`` is the CI-sized run. Nothing here is a test: the
figures are timings of one run on a noisy machine, so read the ratios.
"""
