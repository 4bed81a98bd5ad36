"""LightningModules for image classification (``classifier.py``, ``predictor.py``) and the checkpoint loader.

Below them: ``backbones/`` (the registry), ``metrics/``, ``training/`` (losses, mixing, optimizers, schedules).
"""
