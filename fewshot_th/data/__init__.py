"""Data: SynthHeads (built in), meta-learning episodes."""

from .episodes import EpisodeDataset, episode_batches
from .synthetic import Pose, SynthHeads, distant_poses

__all__ = ["EpisodeDataset", "Pose", "SynthHeads", "distant_poses", "episode_batches"]
