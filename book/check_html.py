"""Check the built book as a reader meets it: python book/check_html.py [_build/html] [--shots DIR]

Two kinds of check, on every chapter page of a built book:

* in the HTML files (no browser needed): no script loaded from the internet, every image
  and local link present, no error text or Python traceback in an output, no Markdown table
  printed as text (pipes and dashes in a code output instead of a rendered table), and every
  widget view with its state embedded in the page;
* in headless Chromium (when ``chromium`` is installed; it has no network here): after the
  page's scripts ran, no equation left as raw TeX (MathJax failed to load or to typeset) and
  every widget view rendered by the widget manager.

``--shots DIR`` also saves a screenshot of the top of each chapter. Exit status 1 lists every
problem, page by page.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Text a reader should never meet in an output: a traceback, or an error printed by a cell.
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|\b\w+Error: |could not be "
                        r"downloaded", re.IGNORECASE)
# A table's rule line; Sphinx's smart quotes may have turned its "---" into a dash.
MARKDOWN_RULE = re.compile(r"^\s*\|(\s*:?(-{3,}|[\u2013\u2014]-?):?\s*\|)+\s*$", re.MULTILINE)
# TeX left in the text after MathJax ran: \( ... \), \[ ... \] or $$ ... $$.
RAW_TEX = re.compile(r"\\\(.+?\\\)|\\\[.+?\\\]|\$\$.+?\$\$", re.DOTALL)


class _Page(HTMLParser):
    """Collects what the static checks need from one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts, self.images, self.links = [], [], []
        self.outputs: list[str] = []  # text of each code output block
        self.widget_views: list[str] = []  # model ids of the widget views
        self.widget_models: set[str] = set()  # model ids in the embedded state
        self._stack: list[tuple[str, bool]] = []  # (tag, opens an output block)
        self._output_depth = 0
        self._script_type: str | None = None
        self._buffer: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if attrs.get("src"):
                self.scripts.append(attrs["src"])
            self._script_type = attrs.get("type")
            self._buffer = []
        elif tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "br", "hr", "meta", "link", "input", "source"):
            return
        classes = (attrs.get("class") or "").split()
        opens = "cell_output" in classes or "output" in classes
        if opens:
            self._output_depth += 1
            if self._output_depth == 1:
                self.outputs.append("")
        self._stack.append((tag, opens))

    def handle_endtag(self, tag):
        if tag == "script" and self._script_type:
            body = "".join(self._buffer)
            if self._script_type == WIDGET_VIEW:
                self.widget_views.append(json.loads(body).get("model_id", ""))
            elif self._script_type == WIDGET_STATE:
                self.widget_models.update(json.loads(body).get("state", {}))
            self._script_type = None
        while self._stack:
            open_tag, opens = self._stack.pop()
            if opens:
                self._output_depth -= 1
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._script_type:
            self._buffer.append(data)
        elif self._output_depth:
            self.outputs[-1] += data


def _local_target(page: Path, reference: str) -> Path | None:
    """The file a relative ``src``/``href`` points at, or None for URLs and anchors."""
    parsed = urlparse(reference)
    if parsed.scheme or parsed.netloc or not parsed.path:
        return None
    return (page.parent / unquote(parsed.path)).resolve()


def static_problems(page: Path) -> list[str]:
    """What is wrong with one built page, from its HTML alone."""
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    problems = [f"script from the internet: {src}" for src in parser.scripts
                if urlparse(src).scheme in ("http", "https") or src.startswith("//")]
    for kind, references in (("image", parser.images), ("link", parser.links)):
        for reference in references:
            if reference.startswith("data:"):
                continue
            target = _local_target(page, reference)
            if target is not None and not target.exists():
                problems.append(f"broken {kind}: {reference}")
    for text in parser.outputs:
        if MARKDOWN_RULE.search(text):
            problems.append("a Markdown table printed as text: "
                            + text.strip().splitlines()[0][:80])
        error = ERROR_TEXT.search(text)
        if error:
            start = max(0, error.start() - 60)
            problems.append(f"error text in an output: ...{text[start:error.end() + 60]!r}")
    missing = [m for m in parser.widget_views if m not in parser.widget_models]
    if missing:
        problems.append(f"{len(missing)} widget view(s) without embedded state")
    return problems


def render(page: Path, chromium: str, *, budget_ms: int = 20000) -> str:
    """The page's DOM after its scripts ran in headless Chromium (no network needed)."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--allow-file-access-from-files", f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=180)
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium could not render {page}: {result.stderr[-2000:]}")
    return result.stdout


class _Text(HTMLParser):
    """The visible text of a page outside typeset math, code and scripts; and how many
    widget views the widget manager rendered."""

    SKIP = ("script", "style", "mjx-container", "mjx-assistive-mml", "pre", "code", "textarea")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.rendered_widgets = 0
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        # The manager puts each view in an element with class "widget-subarea" (or a
        # "jupyter-widgets" view for ipywidgets' controls).
        if "widget-subarea" in classes:
            self.rendered_widgets += 1
        if tag in self.SKIP:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def rendered_problems(page: Path, chromium: str) -> list[str]:
    """What is wrong with one page once a browser ran its scripts."""
    dom = render(page, chromium)
    parser = _Text()
    parser.feed(dom)
    problems = []
    raw = RAW_TEX.search(" ".join(parser.text))
    if raw:
        problems.append(f"raw TeX after MathJax ran: {raw.group(0)[:60]!r}")
    views = dom.count(f'type="{WIDGET_VIEW}"')
    if parser.rendered_widgets < views:
        problems.append(f"{views - parser.rendered_widgets} of {views} widget view(s) not "
                        "rendered")
    return problems


def screenshot(page: Path, chromium: str, destination: Path, size=(1200, 1600)) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--user-data-dir={profile}",
                        "--virtual-time-budget=20000", f"--window-size={size[0]},{size[1]}",
                        f"--screenshot={destination}", page.as_uri()],
                       capture_output=True, timeout=180, check=True)


def find_chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def check_book(html: Path, *, browser: bool | None = None, shots: Path | None = None) -> dict:
    """``{page name: [problems]}`` for every chapter page of a built book (and its intro).

    ``browser``: True runs the browser checks (chromium required), False skips them, None
    runs them when chromium is installed."""
    html = Path(html).resolve()
    pages = sorted((html / "book").glob("[0-9][0-9]_*.html"))
    if not pages:
        raise FileNotFoundError(f"no chapter pages under {html / 'book'}: build the book "
                                "first (make book)")
    chromium = find_chromium() if browser is not False or shots else None
    if browser is None:
        browser = chromium is not None
    if (browser or shots) and chromium is None:
        raise FileNotFoundError("no chromium on PATH: install Debian's chromium package, or "
                                "check without a browser (--no-browser)")
    report = {}
    for page in [html / "book" / "intro.html", *pages]:
        problems = static_problems(page)
        if browser:
            problems += rendered_problems(page, chromium)
        if shots is not None and page.name != "intro.html":
            shots.mkdir(parents=True, exist_ok=True)
            screenshot(page, chromium, shots / f"{page.stem}.png")
        report[page.name] = problems
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default="_build/html", type=Path)
    parser.add_argument("--no-browser", action="store_true",
                        help="only the checks of the HTML files (the default without chromium)")
    parser.add_argument("--shots", type=Path, help="save a screenshot of each chapter here")
    args = parser.parse_args(argv)
    try:
        browser = False if args.no_browser else None
        if browser is None and find_chromium() is None:
            print("chromium is not installed: checking the HTML files only")
        report = check_book(args.html, browser=browser, shots=args.shots)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bad = 0
    for name, problems in report.items():
        print(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"    {problem}")
        bad += len(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
