"""Chaos scenarios: one module per fault, each with idempotent ``inject``/``revert``."""
