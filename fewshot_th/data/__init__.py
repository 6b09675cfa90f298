"""Data: SynthHeads (built in), meta-learning episodes."""

from .episodes import EpisodeDataset, episode_batches, to_device
from .synthetic import COUNTERFACTUALS, Pose, SynthHeads, distant_poses

__all__ = ["COUNTERFACTUALS", "EpisodeDataset", "Pose", "SynthHeads", "distant_poses",
           "episode_batches", "to_device"]
