"""Data: SynthHeads (built in), meta-learning episodes."""

from .episodes import EpisodeDataset
from .synthetic import Pose, SynthHeads

__all__ = ["EpisodeDataset", "Pose", "SynthHeads"]
