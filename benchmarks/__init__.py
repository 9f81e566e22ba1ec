"""Benchmarks and references kept outside the library (run from the repository root)."""
