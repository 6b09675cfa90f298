"""The book: its configuration, its chapters' conventions, and a build with no warnings."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
MARK = "# NBVAL_CHECK_OUTPUT"


def toc_files():
    return [TOC["root"]] + [entry["file"] for entry in TOC["chapters"]]


def test_toc_lists_existing_files_and_every_chapter():
    for name in toc_files():
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), name
    listed = set(toc_files())
    for chapter in CHAPTERS:
        assert f"book/{chapter.stem}" in listed, f"{chapter.name} is not in _toc.yml"
    assert CHAPTERS, "the book needs at least one chapter"


def test_config_pins_execution_launch_buttons_and_bibliography():
    assert CONFIG["execute"]["execute_notebooks"] == "cache"
    assert CONFIG["execute"]["timeout"] > 0
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab")
    assert CONFIG["launch_buttons"]["binderhub_url"]
    assert (ROOT / CONFIG["bibtex_bibfiles"][0]).exists()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_first_cell_installs_on_colab_picks_the_profile_and_seeds(chapter):
    first = nbformat.read(chapter, as_version=4).cells[0]
    assert first.cell_type == "code"
    url = re.search(r'REPOSITORY = "([^"]+)"', first.source)
    assert url and url.group(1) == CONFIG["repository"]["url"], \
        "the Colab install cell must name the repository of _config.yml"
    for needed in ("google.colab", "default_profile()", "DEVICE = fewshot_th.default_device()",
                   "seed_everything("):
        assert needed in first.source


def _calls(source: str, name: str):
    """The text of every call ``name(...)`` in ``source``, brackets matched."""
    for match in re.finditer(rf"\b{name}\(", source):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0:
                break
        yield source[match.start():end + 1]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_compute_on_the_device_of_their_first_cell(chapter):
    """On Colab with a GPU every network a chapter trains or runs on data goes to the GPU:
    the calls that build or load them, or feed them batches, name DEVICE (the exercises' own
    checks may use the CPU)."""
    cells = nbformat.read(chapter, as_version=4).cells
    end = next(i for i, c in enumerate(cells) if "## Exercises" in c.source)
    source = "\n".join(c.source for c in cells[1:end] if c.cell_type == "code")
    checked = 0
    for name in ("load_pretrained", "reconstruction_warmup", "Trainer", "episode_batches"):
        for call in _calls(source, name):
            assert "DEVICE" in call, f"{chapter.name}: {call} does not say device=DEVICE"
            checked += 1
    if chapter.stem >= "02":
        assert checked, f"{chapter.name}: no network on DEVICE"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_committed_chapters_show_their_outputs_without_running(chapter):
    """Readers on GitHub, nbviewer or Colab see the figures before running anything; nbval
    compares the checked cells with the tests' shortened run."""
    cells = [c for c in nbformat.read(chapter, as_version=4).cells if c.cell_type == "code"]
    checked = [c for c in cells if c.source.startswith(MARK)]
    assert checked, "each chapter checks some deterministic outputs with nbval"
    for cell in checked:
        assert cell.outputs and cell.execution_count, \
            f"run `make outputs`: a checked cell has no stored output:\n{cell.source[:80]}"
    figures = sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs)
    assert figures >= 2, "run `make outputs`: the chapter's figures are not stored"
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, "a stored output is an error"
    counts = [c.execution_count for c in cells if c.source.strip()]
    assert all(counts) and counts == sorted(counts), \
        "run `make outputs`: the stored outputs are not those of one run of the whole chapter"
    # The rendered book shows each widget from its saved state (the build below has no kernel).
    views = {o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
             for c in cells for o in c.outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})}
    state = nbformat.read(chapter, as_version=4).metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert views <= set(state), "run `make outputs`: a widget's saved state is missing"


def test_stored_outputs_keep_the_repository_small():
    total = sum(chapter.stat().st_size for chapter in CHAPTERS)
    assert total < 8 * 2**20, f"the chapters hold {total / 2**20:.1f} MiB of outputs"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_goals_summary_and_exercises(chapter):
    text = "\n".join(c.source for c in nbformat.read(chapter, as_version=4).cells
                     if c.cell_type == "markdown")
    for heading in ("Learning goals", "## Summary", "## Exercises", "{cite}"):
        assert heading in text, f"{chapter.name} lacks {heading!r}"


def test_environment_yml_lists_every_dependency_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [d for group in project["optional-dependencies"].values()
                                        for d in group]
    environment = (ROOT / "environment.yml").read_text().lower()
    for requirement in wanted:
        name = re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0].lower()
        assert name in environment, f"{name} is in pyproject.toml but not in environment.yml"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.book
def test_book_builds_without_warnings():
    """Build with warnings as errors: a broken reference fails here, not for a reader.

    The build renders the chapters' stored outputs (those of ``make outputs``, widgets
    included) without running them: nbval runs every chapter in this same test session, so
    a second run here would only double the time. ``make book`` runs the chapters. The
    build goes to _build/test, away from the reader's book in _build/html.
    """
    executable = Path(sys.executable).with_name("jupyter-book")
    output = ROOT / "_build" / "test"
    output.mkdir(parents=True, exist_ok=True)
    config = dict(CONFIG, execute={**CONFIG["execute"], "execute_notebooks": "off"})
    extensions = config["sphinx"]["local_extensions"]  # relative to the configuration file
    config["sphinx"] = {**config["sphinx"], "local_extensions": {
        name: str(ROOT / folder) for name, folder in extensions.items()}}
    (output / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [str(executable) if executable.exists() else shutil.which("jupyter-book"),
               "build", str(ROOT), "--config", str(output / "_config.yml"),
               "--path-output", str(output), "--warningiserror", "--nitpick", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines()
                if "WARNING" in line and "Kernel is running" not in line]
    assert result.returncode == 0 and not warnings, log[-4000:]
    for chapter in CHAPTERS:
        html = (output / "_build" / "html" / "book" / f"{chapter.stem}.html").read_text()
        figures = html.count('src="../_images/') + html.count("data:image/png")
        assert figures >= 2, f"{chapter.name}: its figures are missing from the HTML"
    page = (output / "_build" / "html" / "book" / "01_talking_heads_and_landmarks.html")
    assert "application/vnd.jupyter.widget-view+json" in page.read_text(), \
        "the widgets must be in the HTML"
    local_mathjax = 0
    for chapter in CHAPTERS:
        html = (output / "_build" / "html" / "book" / f"{chapter.stem}.html").read_text()
        assert "REPOSITORY = " not in html, f"{chapter.name}: the set-up cell shows in the HTML"
        local_mathjax += '_static/mathjax/tex-mml-chtml.js' in html
    assert local_mathjax >= len(CHAPTERS) // 2, "the chapters with equations load MathJax locally"
    # As a reader meets it: no CDN script, no broken image or link, no error text or Markdown
    # printed as text; in chromium (when installed) no raw TeX and every widget rendered.
    sys.path.insert(0, str(ROOT / "book"))
    import check_html

    report = check_html.check_book(output / "_build" / "html")
    assert not any(report.values()), {page: p for page, p in report.items() if p}
