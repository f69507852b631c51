"""The report as one file: markdown to self-contained HTML (figures as data URIs, tables, equations as MathML,
the style inline: nothing is fetched when it opens), and that HTML printed to PDF by headless Chromium.

    python main.py report --runs results/demo-cpu --out docs/REPORT.md --html docs/REPORT.html --pdf docs/REPORT.pdf
"""

from __future__ import annotations

import base64
import html
import io
import mimetypes
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

from mllm.io import atomic_write

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STYLE = """
body { font: 15px/1.5 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1d1f23; max-width: 1000px;
       margin: 2em auto; padding: 0 1.5em; }
h1, h2, h3 { line-height: 1.25; break-after: avoid; page-break-after: avoid; }
h2 { border-bottom: 1px solid #d0d4da; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #c9ced6; padding: .25em .55em; vertical-align: top; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #f8f9fb; }
img { display: block; max-width: 100%; max-height: 245mm; height: auto; margin: .6em 0; }
pre { background: #f4f6f8; padding: .6em .8em; overflow-x: auto; font-size: 12.5px; white-space: pre-wrap; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: .92em; }
.bad { color: #c62828; font-weight: bold; }
math[display="block"] { margin: .8em 0; }
img, table, pre, figure, math, p:has(> img), tr { break-inside: avoid; page-break-inside: avoid; }
@page { size: A4; margin: 14mm 12mm; }
@media print { body { max-width: none; margin: 0; padding: 0; font-size: 12.5px; } a { color: inherit; } }
"""
PHOTO_BYTES = 500_000  # a PNG figure above this is re-encoded as JPEG in the page (`_figure_bytes`)
IMG = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')


class HtmlError(ValueError):
    """A figure the HTML cannot hold, or a PDF that cannot be printed; the message names the fix."""


def _math(latex: str, options: dict) -> str:
    return latex_to_mathml(latex, display="block" if options.get("display_mode") else "inline")


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    return md.use(dollarmath_plugin, allow_space=False, allow_digits=False, renderer=_math)


def _inline(match: re.Match, base: Path) -> str:
    src = html.unescape(match.group(2))
    if src.startswith(("data:", "http:", "https:")):
        if src.startswith("data:"):
            return match.group(0)
        raise HtmlError(f"the figure {src} is on the web: a self-contained report needs a local file; "
                        f"copy it beside the report")
    path = (base / src).resolve()
    if not path.is_file():
        raise HtmlError(f"the figure {src} is missing ({path}); write the markdown report again "
                        f"(python main.py report) so that its figures are copied beside it")
    kind, data = _figure_bytes(path)
    return f"{match.group(1)}data:{kind};base64,{base64.b64encode(data).decode()}{match.group(3)}"


def _figure_bytes(path: Path, photo_bytes: int = PHOTO_BYTES) -> tuple[str, bytes]:
    """(MIME type, bytes) of a figure for the page: the file as it is, except a PNG over `photo_bytes` (a figure of
    photos: the galleries, the attention maps) that JPEG (quality 90, on white) holds in under half the bytes."""
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    data = path.read_bytes()
    if kind != "image/png" or len(data) <= photo_bytes:
        return kind, data
    from PIL import Image

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    buffer = io.BytesIO()
    flat.save(buffer, "JPEG", quality=90)
    return ("image/jpeg", buffer.getvalue()) if 2 * buffer.tell() < len(data) else (kind, data)


def markdown_to_html(text: str, base: Path, title: str | None = None) -> str:
    """A self-contained HTML page of the markdown `text`, its images (paths relative to `base`) as data URIs."""
    body = IMG.sub(lambda m: _inline(m, Path(base)), _renderer().render(text))
    if title is None:
        found = re.search(r"^# (.+)$", text, re.M)
        title = found.group(1) if found else "report"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def write_html(markdown: Path, out: Path) -> Path:
    """Write the markdown report `markdown` (its figures beside it) as one self-contained HTML file `out`."""
    page = markdown_to_html(Path(markdown).read_text(), Path(markdown).parent)
    return atomic_write(out, lambda f: f.write(page.encode()))


def find_browser() -> Path:
    """Chromium (or Chrome) on PATH; an error naming how to install it if there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise HtmlError("printing the PDF needs headless Chromium and none is installed: run `make browser` "
                    "(apt-get install chromium), or leave out --pdf and open the --html file instead")


def print_pdf(page: Path, out: Path, timeout: float = 180) -> Path:
    """Print the HTML file `page` to the PDF `out` with headless Chromium (A4, no header or footer)."""
    browser, out = find_browser(), Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mllm-pdf-") as profile:
        tmp = Path(profile) / "out.pdf"
        cmd = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}/profile", "--no-pdf-header-footer", "--print-to-pdf-no-header",
               "--run-all-compositor-stages-before-draw", f"--print-to-pdf={tmp}", Path(page).resolve().as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise HtmlError(f"{browser} did not print {page} within {timeout:.0f} s") from e
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise HtmlError(f"{browser} printed no PDF (exit code {proc.returncode}): {proc.stderr.strip()[-500:]}")
        shutil.move(tmp, out)
    return out
