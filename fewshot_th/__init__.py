"""fewshot_th: Few-Shot Adversarial Learning of Realistic Neural Talking Head Models, step by step.

Zakharov, Shysheya, Burkov and Lempitsky, ICCV 2019. One module per idea of the paper;
see the book (``book/``) for the walk-through.
"""

from .config import default_profile, seed_everything

__version__ = "0.1.0"
__all__ = ["default_profile", "seed_everything", "__version__"]
