"""Image classification datasets by name, as uint8 tensors: MN Table 1 (and NSL Table 4).

    data = load_image_dataset("cifar100", "data", label_kind="fine")
    data.train.images   # uint8 (45000, 3, 32, 32), contiguous, CPU
    data.train.labels   # int64 (45000,)
    data.train.extra["coarse_labels"]

Every set is read from its real on-disk format with our own readers (Python pickles, IDX, .mat,
.npz, PNG/JPEG folders; not torchvision's dataset classes, which verify MD5 sums) into memory once.
Splits follow the paper (MN Appendix A.1) and the official code (docs/official-code.md §A.7); each
loader's docstring and data/README.md state the split. Images are resized once at load time to
32×32 (64×64 for imagenet64, 84×84 for mini-imagenet) with antialiased bilinear interpolation, as the
papers do.
Folder sets (CINIC-10, Tiny-ImageNet, MNIST-M, PACS) are decoded once and cached as a tensor file
under root/<name>/, rebuilt when their files change (count, sizes and modification times).
ImageNet-2012 at full size (`imagenet`, NSL Table 5) is the exception: too large for memory, its
splits are `FileSplit`s of paths, decoded batch by batch while training (streamed.py).

Embedded, offline sets: `digits` (scikit-learn's 1,797 handwritten 8×8 digits, resized) and
`synthetic` (generated oriented gratings, see `make_synthetic_images`).

`limit` keeps the first `limit` images of every split. Splits that come class-sorted from disk are
stored in a seeded class-interleaved order, so any prefix has the split's class proportions.

The package, as torchvision organises its datasets:
    registry.py    ImageSplit, ImageDataset, the registry and load_image_dataset
    utils.py       what the loaders share: resizing, stratified ordering, errors, downloads, the cache
    cifar.py       CIFAR-10, CIFAR-100, CINIC-10
    imagenet.py    Tiny-ImageNet, downsampled ImageNet 64×64, Mini-ImageNet
    imagenet2012.py  ImageNet-2012 at full size, read batch by batch
    streamed.py    FileSplit: a split read from image files batch by batch
    digit_sets.py  MNIST, SVHN, MNIST-M
    pacs.py        PACS
    embedded.py    digits, synthetic (make_synthetic_images)
"""
from __future__ import annotations

# the family modules register their loaders on import, in this order: available_image_datasets()
# lists the sets in MN Table 1's order, then the embedded ones
from . import cifar, imagenet, imagenet2012, digit_sets, pacs, embedded  # noqa: F401
from .cifar import CIFAR10_CLASSES
from .imagenet import MINI_IMAGENET_SPLITS
from .digit_sets import DIGIT_NAMES
from .pacs import PACS_CLASSES, PACS_DOMAINS
from .embedded import DIGIT_COARSE_GROUPS, DIGIT_COARSE_NAMES, make_synthetic_images
from .registry import (_REGISTRY, LABEL_KINDS, DatasetError, ImageDataset, ImageSplit, _register, _Request, _Source,
                       available_few_shot_datasets, available_image_datasets, load_image_dataset)
from .utils import CACHE_FORMAT, IMAGE_SUFFIXES, _assemble, _reading, resize_images, stratified_order
