"""Datasets, the clip contract and the paired source/target DataModule."""
