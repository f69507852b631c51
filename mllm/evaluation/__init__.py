"""Caption evaluation: PTB-style tokenisation, a fast CIDEr-D for rewards, and the COCO caption metrics."""

from .cider import CiderD, ngrams
from .metrics import caption_metrics, check_captions
from .tokenize import PUNCTUATIONS, java_available, ptb_tokenize, simple_tokenize

__all__ = ["CiderD", "ngrams", "caption_metrics", "check_captions", "PUNCTUATIONS", "java_available",
           "ptb_tokenize", "simple_tokenize"]
