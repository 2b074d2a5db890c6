"""Benchmarks: programs that print figures measured on this machine (see README.md)."""
