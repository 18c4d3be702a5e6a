"""Image classification datasets by name, as uint8 tensors (see `load_image_dataset`)."""
from __future__ import annotations

# the family modules register their loaders on import, in this order: available_image_datasets()
# lists the sets in MN Table 1's order, then the embedded ones
from . import cifar, imagenet, digit_sets, pacs, embedded  # noqa: F401
from .cifar import CIFAR10_CLASSES
from .imagenet import MINI_IMAGENET_SPLITS
from .digit_sets import DIGIT_NAMES
from .pacs import PACS_CLASSES, PACS_DOMAINS
from .embedded import DIGIT_COARSE_GROUPS, DIGIT_COARSE_NAMES, make_synthetic_images
from .registry import (_REGISTRY, LABEL_KINDS, ImageDataset, ImageSplit, _register, _Request, _Source,
                       available_few_shot_datasets, available_image_datasets, load_image_dataset)
from .utils import CACHE_FORMAT, IMAGE_SUFFIXES, _assemble, _reading, resize_images, stratified_order
