"""Evaluation: benchmark loaders and generators (SPEC §7)."""
