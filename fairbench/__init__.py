"""fairbench: a fairness audit and benchmarking suite for diffusion models."""

__version__ = "0.1.0"
