"""scalelab: a laboratory for the empirical science of language models."""

__version__ = "0.1.0"
