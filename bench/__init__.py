"""Benchmarks of the LabLink allocator: `python -m bench` runs them all (see bench/README.md)."""
