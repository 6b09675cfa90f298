"""The three networks of the paper: embedder E, generator G, projection discriminator D."""

from torch import nn

from .discriminator import ProjectionDiscriminator
from .embedder import Embedder
from .generator import Generator

__all__ = ["Embedder", "Generator", "ProjectionDiscriminator", "count_parameters"]


def count_parameters(*modules: nn.Module) -> int:
    """How many numbers the modules learn, together (shared parameters counted once)."""
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())
