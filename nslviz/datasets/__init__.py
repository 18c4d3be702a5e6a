"""Datasets: generated toys, embedded offline sets and the real loaders."""
from .toys import make_spiral, spiral_splits

__all__ = ["make_spiral", "spiral_splits"]
from .images import ImageDataset, ImageSplit, available_few_shot_datasets, available_image_datasets, load_image_dataset
from . import glyphs  # noqa: F401  (registers the embedded few-shot set "glyphs")
from .augment import augment_batch, to_float
__all__ += ["ImageDataset", "ImageSplit", "available_few_shot_datasets", "available_image_datasets", "load_image_dataset", "augment_batch", "to_float"]
from .tabular import TabularData, available_tabular_datasets, load_tabular
__all__ += ["TabularData", "available_tabular_datasets", "load_tabular"]
