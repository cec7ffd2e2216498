"""Segmentation metrics beyond torchmetrics."""
