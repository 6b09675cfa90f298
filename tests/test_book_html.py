"""The rendered book's own checks (book/check_html.py) and its offline JavaScript
(book/_ext/local_js.py), on pages and tarballs made here."""

import base64
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "book"), str(ROOT / "book" / "_ext")]

import check_html  # noqa: E402
import local_js  # noqa: E402


def page(tmp_path, body, head="", name="page.html"):
    path = tmp_path / name
    path.write_text(f"<html><head>{head}</head><body>{body}</body></html>", encoding="utf-8")
    return path


def output(text):
    return (f'<div class="cell_output docutils container"><div class="output stream">'
            f'<div class="highlight"><pre>{text}</pre></div></div></div>')


def test_a_clean_page_has_no_problems(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.js").write_text("")
    (tmp_path / "fig.png").write_bytes(b"png")
    body = ('<h1>Title</h1><img src="fig.png"><a href="page.html#x">self</a>'
            '<a href="https://example.org">out</a>' + output("step 10: loss 0.5"))
    assert check_html.static_problems(page(tmp_path, body, '<script src="_static/a.js">'
                                           '</script>')) == []


def test_static_checks_catch_each_problem(tmp_path):
    table = "| a | b |\n|---|---|\n| 1 | 2 |"
    body = ('<img src="missing.png"><a href="gone.html">x</a>' + output(table)
            + output("Traceback (most recent call last):\n  ValueError: bad")
            + '<script type="application/vnd.jupyter.widget-view+json">'
            + json.dumps({"version_major": 2, "model_id": "abc"}) + "</script>")
    problems = check_html.static_problems(page(
        tmp_path, body, '<script src="https://cdn.example.org/mathjax.js"></script>'))
    text = "\n".join(problems)
    for expected in ("script from the internet: https://cdn.example.org/mathjax.js",
                     "broken image: missing.png", "broken link: gone.html",
                     "a Markdown table printed as text", "error text in an output",
                     "1 widget view(s) without embedded state"):
        assert expected in text, (expected, problems)
    assert len(problems) == 6


def test_a_table_whose_rule_became_dashes_is_still_caught(tmp_path):
    # Sphinx's smart quotes turn "---" into an em dash when Markdown is parsed as a paragraph
    body = output("| a | b |\n|\u2014|\u2014|\n| 1 | 2 |")
    assert any("Markdown table" in p for p in check_html.static_problems(page(tmp_path, body)))


def test_a_markdown_table_outside_outputs_and_embedded_widget_state_pass(tmp_path):
    state = {"version_major": 2, "state": {"abc": {"model_name": "FloatProgressModel"}}}
    body = ("<p>| a | b |</p><p>|---|---|</p>"
            '<script type="application/vnd.jupyter.widget-view+json">'
            + json.dumps({"version_major": 2, "model_id": "abc"}) + "</script>")
    head = ('<script type="application/vnd.jupyter.widget-state+json">' + json.dumps(state)
            + "</script>")
    assert check_html.static_problems(page(tmp_path, body, head)) == []


def test_check_book_needs_a_built_book(tmp_path):
    with pytest.raises(FileNotFoundError, match="build the book"):
        check_html.check_book(tmp_path, browser=False)
    assert check_html.main([str(tmp_path), "--no-browser"]) == 2


@pytest.mark.skipif(check_html.find_chromium() is None, reason="needs chromium (Debian package)")
def test_browser_check_catches_raw_tex_and_unrendered_widgets(tmp_path):
    view = ('<script type="application/vnd.jupyter.widget-view+json">'
            + json.dumps({"version_major": 2, "model_id": "abc"}) + "</script>")
    raw = page(tmp_path, r"<p>the score \(r = v^T w\) of D</p>" + view, name="raw.html")
    problems = check_html.rendered_problems(raw, check_html.find_chromium())
    assert any("raw TeX" in p for p in problems), problems
    assert any("1 of 1 widget view(s) not rendered" in p for p in problems), problems
    # A script that "typesets" the math and "renders" the widget satisfies both checks.
    fixed = page(tmp_path, r"<p id='m'>the score \(r = v^T w\) of D</p>" + view
                 + "<script>document.getElementById('m').innerHTML = "
                 "'the score <mjx-container>r</mjx-container> of D';"
                 "var d = document.createElement('div'); d.className = 'widget-subarea';"
                 "document.body.appendChild(d);</script>", name="fixed.html")
    assert check_html.rendered_problems(fixed, check_html.find_chromium()) == []


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_vendor_unpacks_only_the_kept_files_checks_the_hash_and_is_idempotent(tmp_path,
                                                                              monkeypatch):
    data = tarball({"package/es5/tex.js": b"tex", "package/es5/out/font.woff": b"font",
                    "package/es5/tex.js.map": b"map", "package/README.md": b"readme"})
    fake = local_js.Package("fake", "1.0.0", integrity(data), folder="fake", keep="package/es5/")
    monkeypatch.setattr(local_js, "PACKAGES", (fake,))
    calls = []

    def fetch(package, timeout):
        calls.append(package.name)
        return data

    root = local_js.ensure_vendor(tmp_path / "vendor", fetch=fetch)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["fake/.release", "fake/out/font.woff", "fake/tex.js"]
    assert (root / "fake" / "tex.js").read_bytes() == b"tex"
    local_js.ensure_vendor(tmp_path / "vendor", fetch=fetch)
    assert calls == ["fake"], "a present release is not fetched again"


def test_vendor_refuses_a_tarball_that_does_not_match_its_hash(tmp_path, monkeypatch):
    good = tarball({"package/a.js": b"a"})
    fake = local_js.Package("fake", "1.0.0", integrity(good), folder="fake", keep="package/")
    monkeypatch.setattr(local_js, "PACKAGES", (fake,))
    with pytest.raises(local_js.VendorError, match="does not match"):
        local_js.ensure_vendor(tmp_path, fetch=lambda p, t: tarball({"package/a.js": b"evil"}))
    assert not (tmp_path / "fake").exists()


def test_vendor_without_network_says_how_to_build_anyway(tmp_path, monkeypatch):
    fake = local_js.Package("fake", "1.0.0", "sha512-x", folder="fake", keep="package/")
    monkeypatch.setattr(local_js, "PACKAGES", (fake,))
    monkeypatch.setattr(local_js, "REGISTRY", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(local_js.VendorError, match="FEWSHOT_TH_BOOK_JS=cdn"):
        local_js.ensure_vendor(tmp_path, timeout=5)


def test_pinned_packages_name_the_files_the_pages_load():
    folders = {p.folder for p in local_js.PACKAGES}
    for path in (local_js.MATHJAX, local_js.REQUIREJS, local_js.WIDGETS):
        assert path.split("/")[0] in folders
    for package in local_js.PACKAGES:
        assert package.integrity.startswith("sha512-") and package.version.count(".") == 2


class _Config:
    html_static_path: list = []
    mathjax_path = "https://cdn.example.org/mathjax.js"
    nb_ipywidgets_js = {"https://cdn.example.org/require.js": {}}


class _App:
    def __init__(self, confdir):
        self.confdir = str(confdir)


def test_the_book_serves_its_scripts_unless_told_to_use_cdns(tmp_path, monkeypatch):
    fetched = []
    monkeypatch.setattr(local_js, "ensure_vendor", lambda root: fetched.append(root) or root)
    monkeypatch.setenv(local_js.SWITCH, "cdn")
    config = _Config()
    local_js._configure(_App(tmp_path), config)
    assert config.mathjax_path.startswith("https://") and not fetched
    monkeypatch.delenv(local_js.SWITCH)
    local_js._configure(_App(tmp_path), config)
    assert fetched == [tmp_path / "_build" / "vendor"]
    assert config.html_static_path == [str(tmp_path / "_build" / "vendor")]
    assert config.mathjax_path == local_js.MATHJAX
    assert list(config.nb_ipywidgets_js) == [local_js.REQUIREJS, local_js.WIDGETS]
