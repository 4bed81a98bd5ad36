"""LightningDataModules for image classification: CIFAR-10 (+ LT, device-resident), ImageNet, class folders, WebDataset shards, prediction inputs.

The pieces they are made of live one level down: ``readers/``, ``transforms/``, ``sampling/``, ``shards/``.
"""
