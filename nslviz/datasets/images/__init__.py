"""Image classification datasets by name, as uint8 tensors (see `load_image_dataset`)."""
from __future__ import annotations

from .registry import (CACHE_FORMAT, CIFAR10_CLASSES, DIGIT_COARSE_GROUPS, DIGIT_COARSE_NAMES, DIGIT_NAMES,
                       IMAGE_SUFFIXES, LABEL_KINDS, MINI_IMAGENET_SPLITS, PACS_CLASSES, PACS_DOMAINS, _REGISTRY,
                       ImageDataset, ImageSplit, _assemble, _reading, _register, _Request, _Source,
                       available_few_shot_datasets, available_image_datasets, load_image_dataset,
                       make_synthetic_images, resize_images, stratified_order)
