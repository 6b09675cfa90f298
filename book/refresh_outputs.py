"""Store every chapter's outputs from a full run: python book/refresh_outputs.py [notebooks...]

Runs each chapter in a fresh kernel with the CPU profile and the full live experiments (the
reader's run, not the tests' shortened one) and keeps every output, so that the notebooks
show their figures, tables and numbers on GitHub, in nbviewer and in Colab before anyone runs
them. Figures are drawn at 80 dpi to keep the repository small; execution timestamps are
dropped. The widgets' saved state (what each widget shows at its start, about 0.5 MB for the
whole book) is kept: the rendered book shows the widgets from it without a kernel, and the
tests build the book from these stored outputs instead of running every chapter a second
time (``tests/test_book.py``). The cells marked ``# NBVAL_CHECK_OUTPUT`` are the ones
``pytest --nbval-lax`` compares with the tests' shortened run, so their outputs must not
depend on the shortening (they hold shapes, counts and stored results).

``make outputs`` runs it for every chapter (about 9 minutes on 2 CPU cores; each chapter's time
is printed, ``bench/RESULTS.md`` records them).
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

DPI = 80


def refresh(path: Path) -> float:
    """Run one chapter and store its outputs; returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    images = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        images += sum("image/png" in output.get("data", {}) for output in cell.outputs)
    nbformat.write(notebook, path)
    seconds = time.perf_counter() - start
    print(f"refreshed {path}: {images} figures, {path.stat().st_size / 2**10:.0f} KiB, "
          f"executed in {seconds:.0f} s")
    return seconds


if __name__ == "__main__":
    os.environ["FEWSHOT_TH_PROFILE"] = "cpu"
    os.environ.pop("FEWSHOT_TH_QUICK", None)  # the reader's full experiments
    os.environ.pop("MPLBACKEND", None)  # the kernels must keep the inline backend
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path(__file__).parent.glob("[0-9]*.ipynb"))
    with tempfile.TemporaryDirectory() as config:
        Path(config, "matplotlibrc").write_text(f"figure.dpi: {DPI}\n")
        os.environ["MATPLOTLIBRC"] = config
        # A cache of this run only: the stored outputs are those of a reader's first run
        # (chapter 3 still reuses the warm-up chapter 2 trained a moment before).
        os.environ["FEWSHOT_TH_CACHE"] = str(Path(config, "cache"))
        total = sum(refresh(notebook_path) for notebook_path in paths)
    print(f"{len(paths)} chapters executed in {total:.0f} s")
