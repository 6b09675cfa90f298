"""The three networks of the paper: embedder E, generator G, projection discriminator D."""

from .discriminator import ProjectionDiscriminator
from .embedder import Embedder
from .generator import Generator

__all__ = ["Embedder", "Generator", "ProjectionDiscriminator"]
