"""Adaptation methods as LightningModules, and their parts (losses, EMA teacher, optimisation)."""
