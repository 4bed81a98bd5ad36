"""Transforms: Albumentations pipelines and policies per sample, batched augmentation on the device, normalisation, worker seeding."""
