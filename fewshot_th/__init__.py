"""fewshot_th: Few-Shot Adversarial Learning of Realistic Neural Talking Head Models, step by step.

Zakharov, Shysheya, Burkov and Lempitsky, ICCV 2019. One module per idea of the paper;
see the book (``book/``) for the walk-through.
"""

from .config import default_device, default_profile, seed_everything

__version__ = "0.1.0"
__all__ = ["default_device", "default_profile", "seed_everything", "load_pretrained", "__version__"]


def load_pretrained(name: str = "synthheads-cpu", device="cpu"):
    """A model shipped with the package, in eval mode, on ``device`` (see
    ``fewshot_th.pretrained``)."""
    from .pretrained import load_pretrained as load

    return load(name, device=device)
