"""Serve the book's JavaScript from the book itself, so that pages work without internet.

A Jupyter Book page loads three scripts from CDNs by default: MathJax (Sphinx's
``mathjax_path``), RequireJS and the ipywidgets HTML manager (myst-nb's
``nb_ipywidgets_js``). Offline (a course lab, a train journey) every equation then shows as
raw LaTeX and no widget renders. This Sphinx extension downloads pinned releases of the three
npm packages once, checks each tarball against the registry's sha512, unpacks the files the
pages need into ``_build/vendor/`` and points both settings there; Sphinx copies them into
``_static/``.

``FEWSHOT_TH_BOOK_JS=cdn`` keeps the CDNs (smaller output, needs internet to read).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
SWITCH = "FEWSHOT_TH_BOOK_JS"


@dataclass(frozen=True)
class Package:
    """One npm release: where its files go under the vendor folder, and which to keep."""

    name: str
    version: str
    integrity: str  # the registry's dist.integrity (sha512 of the tarball, base64)
    folder: str
    keep: str  # files under this folder of the tarball ("package/...") are kept
    skip_suffixes: tuple[str, ...] = (".map", ".md", ".ts")

    @property
    def tarball_url(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return f"{REGISTRY}/{self.name}/-/{base}-{self.version}.tgz"


PACKAGES = (
    Package("mathjax", "3.2.2",
            "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1v"
            "O+geW0OhGw==",
            folder="mathjax", keep="package/es5/"),
    Package("requirejs", "2.3.8",
            "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFl"
            "yQXSowL6Mw==",
            folder="requirejs", keep="package/require.js"),
    # The version myst-nb loads from its CDN by default (widget state of ipywidgets 8).
    Package("@jupyter-widgets/html-manager", "1.0.6",
            "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWC"
            "JrtZrXTXDQ==",
            folder="html-manager", keep="package/dist/",
            skip_suffixes=(".map", ".md", ".ts", "embed.js", ".LICENSE.txt")),
)
# Paths relative to Sphinx's _static folder.
MATHJAX = "mathjax/tex-mml-chtml.js"
REQUIREJS = "requirejs/require.js"
WIDGETS = "html-manager/embed-amd.js"


class VendorError(RuntimeError):
    """The scripts could not be fetched; the message says how to build anyway."""


def _check_integrity(data: bytes, package: Package) -> None:
    algorithm, expected = package.integrity.split("-", 1)
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise VendorError(f"{package.tarball_url} does not match its pinned {algorithm}: "
                          "refusing to put it in the book")


def _download(package: Package, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(package.tarball_url, timeout=timeout) as response:
            return response.read()
    except OSError as error:
        raise VendorError(
            f"could not download {package.name}@{package.version} from {package.tarball_url} "
            f"({error}). The book serves MathJax, RequireJS and the widget manager itself so "
            f"that it reads offline; it needs the npm registry once to fetch them. Build with "
            f"{SWITCH}=cdn to load them from CDNs instead.") from error


def _unpack(data: bytes, package: Package, destination: Path) -> int:
    kept = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith(package.keep):
                continue
            if member.name.endswith(package.skip_suffixes):
                continue
            relative = member.name[len(package.keep):] or Path(member.name).name
            target = (destination / relative).resolve()
            if destination.resolve() not in target.parents:
                raise VendorError(f"{package.name}: {member.name} would unpack outside "
                                  f"{destination}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
            kept += 1
    return kept


def ensure_vendor(root: Path, *, timeout: float = 60.0, fetch=_download) -> Path:
    """Make ``root`` hold every package of ``PACKAGES`` (downloading what is missing) and
    return it. Each package lives in ``root/<folder>`` with a stamp naming its release; a
    folder without the right stamp is fetched afresh."""
    root = Path(root)
    for package in PACKAGES:
        folder = root / package.folder
        stamp = folder / ".release"
        release = f"{package.name}@{package.version} {package.integrity}"
        if stamp.exists() and stamp.read_text() == release:
            continue
        data = fetch(package, timeout)
        _check_integrity(data, package)
        partial = root / f".{package.folder}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        if not _unpack(data, package, partial):
            raise VendorError(f"{package.name}@{package.version} has no files under "
                              f"{package.keep}")
        (partial / ".release").write_text(release)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return root


def _configure(app, config) -> None:
    if os.environ.get(SWITCH, "local").strip().lower() == "cdn":
        return
    vendor = ensure_vendor(Path(app.confdir) / "_build" / "vendor")
    config.html_static_path = [*config.html_static_path, str(vendor)]
    config.mathjax_path = MATHJAX
    # No CDN for third-party widget modules either: the book only uses ipywidgets' own.
    config.nb_ipywidgets_js = {REQUIREJS: {}, WIDGETS: {}}


def setup(app):
    # After myst-nb and Sphinx registered their settings, before myst-nb reads them
    # (builder-inited).
    app.connect("config-inited", _configure, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
