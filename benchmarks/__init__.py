"""Benchmarks of portable_nn (a tool, not a test): ``python -m benchmarks``."""
