"""flowergan: a JAX/Flax conditional WGAN-GP (CWGAN-GP_128) for small labelled image sets."""

__version__ = "0.1.0"
