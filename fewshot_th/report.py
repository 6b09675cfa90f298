"""The files ``fewshot-th evaluate`` writes: ``scores.json`` (every number), ``table.md``
(the paper's Table 1 layout, the K gain and, on SynthHeads, the attribute tables),
``scores.png`` (each metric against K) and ``gains.png`` (what K buys, beside the paper)."""

from __future__ import annotations

import json
from pathlib import Path

from .plot import gains_against_paper, scores_against_k
from .tables import attribute_table, k_gain_table, scores_table

__all__ = ["write_report"]


def write_report(out, results: dict, source: str, people: str, *, real_videos: bool = False,
                 fid_note: str = "", **settings) -> str:
    """Write the four files of an evaluation (``results`` of ``evaluate_few_shot`` or
    ``evaluate_video_folder``) into ``out``; ``source`` names the model, ``people`` whom it
    was scored on, ``settings`` (seed, ft_steps, ...) go into ``scores.json``. Returns the
    tables as text."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(
        {"model": source, "people": people, **settings,
         "scores": {kind: {str(k): v for k, v in by_k.items()} for kind, by_k in results.items()}},
        indent=1))
    several_k = any(len(by_k) > 1 for by_k in results.values())
    data = "held-out videos" if real_videos else "SynthHeads"
    table = scores_table(results, data, "dlib" if real_videos else "SynthHeads identity "
                         "network") + ("\nMore shots, paired over the people:\n\n"
                                       + k_gain_table(results, data) if several_k else "")
    attributes = "" if real_videos else "".join(
        f"\nAttribute recall, {kind} targets: the share of target frames that show each "
        "attribute (closer to the truth than to the same frame with that attribute changed); "
        "D's accuracy at telling the real targets from the FF frames.\n\n"
        + attribute_table(results, kind) for kind in results)
    networks = ("CSIM, where shown, comes from dlib's face-recognition network (frames where "
                "dlib finds no face are left out)." if real_videos else
                "CSIM, where shown, comes from the SynthHeads identity network, and so do the "
                "features of the realism FD (its floor: other real frames of the same people).")
    (out / "table.md").write_text(
        f"Few-shot scores of {source} on {people} (self-reenactment, 8 targets each).\n\n"
        + table + f"\n{fid_note or 'FID: see the fid column (over all targets of one K).'} "
        + networks + " The paper's rows are for trends, not values.\n" + attributes)
    for name, fig in (("scores.png", scores_against_k(results)),
                      ("gains.png", gains_against_paper(results))):
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
    return table + attributes
