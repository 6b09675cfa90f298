"""Data: SynthHeads (built in), folders of preprocessed real videos, meta-learning episodes."""

from .episodes import EpisodeDataset, episode_batches, to_device
from .synthetic import COUNTERFACTUALS, Pose, SynthHeads, distant_poses
from .videofolder import VideoFolder

__all__ = ["COUNTERFACTUALS", "EpisodeDataset", "Pose", "SynthHeads", "VideoFolder",
           "distant_poses", "episode_batches", "to_device"]
