"""Segmentation networks behind one video interface: ``model(frames, flow) -> SegmentationOutput``."""
