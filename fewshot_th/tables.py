"""Markdown tables of ``fewshot_th.evaluation.evaluate_few_shot``'s results: the paper's
Table 1 layout beside the paper's own numbers, and the attribute table."""

from __future__ import annotations

from .data import COUNTERFACTUALS
from .metrics import paired_gain

__all__ = ["TARGET_KINDS", "PAPER_TABLE1", "by_target_kind", "scores_table", "attribute_table",
           "k_gain_table", "markdown_table"]

TARGET_KINDS = ("same-video", "pose-distant")  # how the evaluation's results are keyed

# Table 1 of the paper, VoxCeleb2, K = 1 / 8 / 32 (FID confirmed by a public leaderboard, the
# rest unverified). For trends, not for values: other data, 256 px.
PAPER_TABLE1 = {
    "FF": {"fid": (46.1, 42.5, 40.4), "ssim": (0.61, 0.64, 0.65), "csim": (0.42, 0.47, 0.48)},
    "FT": {"fid": (48.5, 42.2, 30.6), "ssim": (0.64, 0.68, 0.72), "csim": (0.35, 0.42, 0.45)},
}


def by_target_kind(results: dict) -> dict:
    """``evaluate_few_shot``'s results as ``{kind: {K: {method: scores}}}``; a ``{K: ...}``
    dict of one kind (as an older evaluation stored it) counts as same-video targets."""
    if not isinstance(results, dict) or not results:
        raise ValueError("expected evaluate_few_shot's results, got an empty or non-dict value")
    if all(kind in TARGET_KINDS for kind in results):
        return results
    if all(str(k).isdigit() for k in results):
        return {"same-video": results}
    raise ValueError(f"expected results keyed by target kind {TARGET_KINDS} or by K, got "
                     f"keys {list(results)}")


def scores_table(results: dict, data: str = "SynthHeads",
                 csim_network: str = "SynthHeads identity network") -> str:
    """A Markdown table like the paper's Table 1 from ``evaluate_few_shot``'s (or
    ``evaluate_video_folder``'s) results: one row per target kind and method, each metric as
    "K = 1 / 8 / 32" values, the paper's VoxCeleb2 rows below. ``data`` names what was
    scored (the first column) and ``csim_network`` the network behind CSIM."""
    kinds = by_target_kind(results)
    first = next(iter(kinds.values()))
    ks = sorted(first, key=int)
    methods = list(first[ks[0]])
    present = first[ks[0]][methods[0]]
    metrics = [(key, title, digits) for key, title, digits in (
        ("fid", "FID (lower)", 1),
        ("ssim", "SSIM (higher)", 3),
        ("person_ssim", "SSIM on the person (higher)", 3),
        ("l1", "L1 (lower)", 3),
        ("person_l1", "L1 on the person (lower)", 3),
        ("detail_l1", "L1 on one-sided details (lower)", 3),
        ("fd", "realism FD (lower)", 2),
        ("retrieval", "identity retrieval (higher)", 2),
        ("csim", f"CSIM (higher; {csim_network})", 3),
    ) if key in present]
    rows = []
    k_text = " / ".join(str(k) for k in ks)
    for kind, by_k in kinds.items():
        for method in methods:
            rows.append([f"{data}, {kind} targets", method, k_text] +
                        [" / ".join(_number(by_k[k][method].get(m), digits) for k in ks)
                         for m, _, digits in metrics])
        if "fd_floor" in by_k[ks[0]][methods[0]]:
            rows.append([f"{data}, {kind} targets", "other real frames (floor)", "-"] +
                        [_number(by_k[ks[0]][methods[0]]["fd_floor"], 2) if m == "fd" else "-"
                         for m, _, _ in metrics])
    for method, values in PAPER_TABLE1.items():
        paper_cells = {"ssim": " / ".join(f"{v:.2f}" for v in values["ssim"]),
                       "csim": " / ".join(f"{v:.2f}" for v in values["csim"]),
                       "fid": " / ".join(f"{v:.1f}" for v in values["fid"])}
        rows.append(["VoxCeleb2 (paper)", f"Ours-{method}", "1 / 8 / 32"] +
                    [paper_cells.get(m, "-") for m, _, _ in metrics])
    return markdown_table(["data", "method", "K"] + [title for _, title, _ in metrics], rows)


def attribute_table(results: dict, kind: str = "same-video") -> str:
    """A Markdown table of attribute recall for one kind of target: one row per method and K,
    one column per attribute (the share of frames that show it; "-" where no target frame
    shows it), and the meta-learned D's accuracy on the FF rows."""
    by_k = by_target_kind(results).get(kind)
    if by_k is None:
        raise ValueError(f"no {kind!r} targets in these results; they have "
                         f"{list(by_target_kind(results))}")
    ks = sorted(by_k, key=int)
    methods = list(by_k[ks[0]])
    if "recall" not in by_k[ks[0]][methods[0]]:
        raise ValueError("these results have no attribute recall (an evaluation from before "
                         "it existed): run evaluate_few_shot again")
    lines = [f"| method | K | {' | '.join(COUNTERFACTUALS)} | D's accuracy |",
             "|" + "---|" * (3 + len(COUNTERFACTUALS))]
    for method in methods:
        for k in ks:
            scores = by_k[k][method]
            cells = [_number(scores["recall"].get(name), 2) for name in COUNTERFACTUALS]
            lines.append(f"| {method} | {k} | {' | '.join(cells)} | "
                         f"{_number(scores.get('d_accuracy'), 2)} |")
    frames = by_k[ks[0]][methods[0]]["recall_frames"]
    lines.append(f"| frames that show it | | {' | '.join(str(frames[n]) for n in COUNTERFACTUALS)}"
                 " | |")
    return "\n".join(lines) + "\n"


def k_gain_table(results: dict, data: str = "SynthHeads") -> str:
    """Do more shots help? A Markdown table with one row per target kind and generating
    method: the SSIM gain from the smallest K to the largest, paired over the test people
    (mean ± standard error, "-" for one person, and for how many people it is positive), and
    the L1 on the one-sided details at both ends; ``data`` names what was scored."""
    rows = []
    for kind, by_k in by_target_kind(results).items():
        ks = sorted(by_k, key=int)
        low, high = by_k[ks[0]], by_k[ks[-1]]
        for method in (m for m in ("FF", "FT", "model") if m in low):
            mean, error, better = paired_gain(high[method]["ssim_by_identity"],
                                              low[method]["ssim_by_identity"])
            rows.append([f"{data}, {kind} targets", method, f"{ks[0]} -> {ks[-1]}",
                         f"{mean:+.4f} ± {_number(error, 4)}",
                         f"{better} of {len(low[method]['ssim_by_identity'])}",
                         f"{_number(low[method].get('detail_l1'), 3)} -> "
                         f"{_number(high[method].get('detail_l1'), 3)}"])
    return markdown_table(["data", "method", "K", "SSIM gain (paired)", "people better",
                           "L1 on one-sided details"], rows)


def _number(value, digits: int) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def markdown_table(columns, rows) -> str:
    """A Markdown table: ``columns`` are the header's cells, each row as many cells (any
    values; shown with ``str``). Display it with ``IPython.display.Markdown`` so that the book
    renders a table, not text with pipes."""
    columns = [str(c) for c in columns]
    if not columns:
        raise ValueError("markdown_table needs at least one column")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for number, row in enumerate(rows):
        cells = [str(c).replace("|", "\\|") for c in row]
        if len(cells) != len(columns):
            raise ValueError(f"row {number} has {len(cells)} cells for {len(columns)} columns")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
