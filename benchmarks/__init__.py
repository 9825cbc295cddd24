"""Benchmarks: speed and memory, measured and printed as tables (never asserted in tests)."""
