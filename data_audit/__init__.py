"""The sections of a dataset audit (``audit.py``): class balance, image health, duplicates/leakage, label errors, and ``report.md``."""
