"""nlkit: a notebook-first reproducibility kit for learning with noisy labels."""

__version__ = "0.1.0"
