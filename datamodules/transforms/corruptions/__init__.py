"""ImageNet-C's 15 corruptions for any dataset (``eval.py robustness=corruptions``, docs/corruptions.md).

``tables.py``: the published parameters (ImageNet-C and CIFAR-10-C scripts) and AlexNet's errors;
``ops.py``: the 15 operations on uint8 HxWx3 images; ``hook.py``: the deterministic test-time hook
(clean + every corruption x severity) the DataModules apply in their loader workers.
"""
