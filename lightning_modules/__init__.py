"""LightningModules for image classification."""
