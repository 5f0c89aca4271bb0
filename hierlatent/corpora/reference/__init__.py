"""Slow, obviously-correct per-sentence reference generators: the tests oracle and the benchmarks baseline."""
