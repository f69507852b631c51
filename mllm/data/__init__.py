"""The three real data sets: fetched from a mirror or the official source, prepared once into a cache."""

from .cifar import Cifar10, prepare_cifar10
from .download import MIRROR_ENV, DataError, default_mirror
from .flickr8k import Flickr8k, prepare_flickr8k
from .shakespeare import Shakespeare, prepare_shakespeare

__all__ = ["Cifar10", "prepare_cifar10", "MIRROR_ENV", "DataError", "default_mirror", "Flickr8k",
           "prepare_flickr8k", "Shakespeare", "prepare_shakespeare"]
