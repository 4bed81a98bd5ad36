"""Metrics: the torchmetrics collections each split reports and the calibration error."""
