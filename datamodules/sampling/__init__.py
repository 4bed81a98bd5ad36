"""Sampling: which samples a split holds and in what order (splits, long-tail cut, exclusions, class-balanced and repeated-augmentation samplers)."""
