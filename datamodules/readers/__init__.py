"""Readers: what turns a source on disk into images and labels (CIFAR pickles, JPEG/PNG decode, file indexes, downloads).

The DataModules one folder up choose a reader by source, as timm's ``data/readers`` does; nothing here knows
about Lightning.
"""
