"""Hydra config groups, one per swappable part; installed as ``litvision.conf`` so other apps can compose them."""
