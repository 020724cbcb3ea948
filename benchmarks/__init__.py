"""The benchmarks behind docs/benchmarks.md: `python -m benchmarks.run_all` runs them all."""
