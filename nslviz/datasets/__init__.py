"""Datasets: generated toys, embedded offline sets and the real loaders."""
from .toys import make_spiral, spiral_splits

__all__ = ["make_spiral", "spiral_splits"]
