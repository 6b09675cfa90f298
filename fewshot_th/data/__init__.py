"""Data: SynthHeads (built in), meta-learning episodes."""

from .episodes import EpisodeDataset, episode_batches
from .synthetic import Pose, SynthHeads

__all__ = ["EpisodeDataset", "Pose", "SynthHeads", "episode_batches"]
