"""Reinforcement-learning fine-tuning of the captioner: self-critical sequence training on CIDEr-D."""
