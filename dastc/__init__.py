"""dastc: DA-STC domain adaptive video semantic segmentation on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
