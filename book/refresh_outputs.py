"""Store the outputs that nbval checks: python book/refresh_outputs.py [notebooks...]

Runs each chapter in a fresh kernel (CPU profile, shortened experiments), keeps the outputs
of the cells marked ``# NBVAL_CHECK_OUTPUT`` (shapes, counts: deterministic) and clears every
other output, so
the notebooks in git stay small while ``pytest --nbval-lax`` has something to compare.
"""

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

MARK = "# NBVAL_CHECK_OUTPUT"


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    count = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        if cell.source.startswith(MARK):
            count += 1  # nbval only compares cells that have an execution count
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
        else:
            cell.execution_count = None
            cell.outputs = []
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    print("refreshed", path)


if __name__ == "__main__":
    # The stored outputs are the CPU profile's; the shortened experiments do not change them.
    os.environ["FEWSHOT_TH_PROFILE"] = "cpu"
    os.environ["FEWSHOT_TH_QUICK"] = "1"
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path(__file__).parent.glob("*.ipynb"))
    for notebook_path in paths:
        refresh(notebook_path)
