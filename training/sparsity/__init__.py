"""Sparse training methods usable by any objective (see methods.py)."""
from training.sparsity.methods import METHODS, SparsityConfig, Sparsifier

__all__ = ["METHODS", "SparsityConfig", "Sparsifier"]
