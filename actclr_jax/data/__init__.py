"""Data: raw-file parsers, preparation into arrays, the synthetic set, and the grain pipeline."""
