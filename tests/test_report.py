"""The report as a deliverable: the test stage's per-file table and screenshot from a real pytest run (a project
with a failing file, made here), and the report as one self-contained HTML file and as a PDF."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.text import Text

from mllm.cli import main
from mllm.report import testrun
from mllm.report.html import PHOTO_BYTES, _figure_bytes, markdown_to_html, print_pdf
from mllm.report.terminal import RED, mark_bad
from mllm.report.testrun import RESULTS, SCREENSHOT

REPO = Path(__file__).resolve().parents[1]
PROJECT = {
    "test_zeta.py": "def test_fine():\n    pass\n",
    "test_attention.py": "import pytest\n\n@pytest.mark.parametrize('n', range(3))\ndef test_core(n):\n    pass\n",
    "test_broken.py": ("import pytest\n\n@pytest.fixture\ndef broken():\n    raise RuntimeError('no fixture')\n\n"
                       "def test_fails():\n    assert 1 + 1 == 3, 'arithmetic'\n\n"
                       "def test_errors(broken):\n    pass\n\n"
                       "@pytest.mark.skip(reason='not today')\ndef test_skipped():\n    pass\n\n"
                       "def test_passes():\n    pass\n"),
}


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """A tiny project whose tests/ holds a failing file, run through the test stage's own code path."""
    root = tmp_path_factory.mktemp("project")
    (root / "tests").mkdir()
    for name, text in PROJECT.items():
        (root / "tests" / name).write_text(text)
    runs = root / "runs"
    return runs, testrun.run_tests(runs / "tests", root=root)


def _closing_counts(console: str) -> dict[str, int]:
    """pytest's own closing line, e.g. '== 1 failed, 5 passed, 1 skipped, 1 error in 0.1s ==', as counts."""
    line = console.strip().splitlines()[-1]
    words = {"errors": "error", "warnings": "warning"}
    return {words.get(w, w): int(n) for n, w in re.findall(r"(\d+) (\w+)", line.split(" in ")[0])}


def test_a_failing_file_shows_as_failed_with_pytests_own_numbers(failing_run, tmp_path):
    runs, result = failing_run
    console = (runs / "tests" / "console.txt").read_text()
    assert result["exit_code"] == 1
    assert result["counts"] == _closing_counts(console) == {"passed": 5, "failed": 1, "error": 1, "skipped": 1}
    section = testrun.tests_section(runs, tmp_path, tmp_path / "figures", tests_ran=True)
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "| file | passed | failed | errors | skipped | time |"
    files = [re.sub(r"<[^>]+>|`", "", row.split("|")[1]).strip() for row in rows[1:]]
    assert files == ["tests/test_attention.py (core)", "tests/test_broken.py", "tests/test_zeta.py", "**all**"]
    broken = rows[2].split("|")
    assert broken[1].strip() == '<b class="bad">tests/test_broken.py</b>'
    assert [c.strip() for c in broken[2:6]] == ["1", *(['<b class="bad">1</b>'] * 3)]  # passed, failed, errors, skip
    assert rows[1].split("|")[2:6] == [" 3 ", " 0 ", " 0 ", " 0 "] and "bad" not in rows[1]
    total = [int(re.sub(r"<[^>]+>|\*", "", c)) for c in rows[-1].split("|")[2:6]]
    assert total == [_closing_counts(console).get(k, 0) for k in ("passed", "failed", "error", "skipped")]
    assert "NOT all passed (pytest exit code 1)" in section
    assert "`tests/test_broken.py::test_fails`: AssertionError: arithmetic" in section
    assert "`tests/test_broken.py::test_skipped`: Skipped: not today" in section
    picture = re.search(r"!\[[^]]*\]\(([^)]+)\)", section).group(1)
    assert (tmp_path / picture).read_bytes() == (runs / "tests" / SCREENSHOT).read_bytes()


def test_the_screenshot_draws_the_console_with_the_bad_marks_in_red(failing_run):
    runs, _ = failing_run
    line = mark_bad(Text("tests/test_broken.py F.Es    [ 50%]"))
    red = {i for span in line.spans if span.style == RED for i in range(span.start, span.end)}
    assert red == {21, 23, 24}  # F, E, s; the pass (.) is not red
    assert not mark_bad(Text("tests/test_zeta.py .  [100%]")).spans
    image = np.asarray(Image.open(runs / "tests" / SCREENSHOT).convert("RGB")).astype(int)
    assert image.shape[1] > 600 and image.shape[0] > 300
    reds = int(((image[..., 0] > 200) & (image[..., 1] < 120) & (image[..., 2] < 120)).sum())
    assert reds > 200  # the F/E/s marks, the FAILED/ERROR/SKIPPED lines, the closing line's counts


def test_a_report_whose_test_stage_did_not_run_says_so(failing_run, tmp_path):
    runs, _ = failing_run
    section = testrun.tests_section(runs, tmp_path, tmp_path / "figures", tests_ran=False)
    assert "did not run in this demo" in section and "| file |" not in section and "![" not in section
    kept = testrun.tests_section(runs, tmp_path, tmp_path / "figures", tests_ran=None)
    assert "The test stage did not run for this report: the result below is from a run of it" in kept
    assert "| file |" in kept
    assert "No test result is kept" in testrun.tests_section(tmp_path, tmp_path, tmp_path / "figures", tests_ran=None)
    (runs / "tests" / RESULTS).rename(runs / "tests" / "moved.json")
    try:
        assert "No test result is kept" in testrun.tests_section(runs, tmp_path, tmp_path / "f", tests_ran=None)
    finally:
        (runs / "tests" / "moved.json").rename(runs / "tests" / RESULTS)


def test_the_html_report_holds_every_figure_inline(failing_run, tmp_path):
    runs = tmp_path / "runs"  # the kept cpu runs, with the failing project's test stage
    runs.mkdir()
    for stage in (REPO / "results" / "demo-cpu").glob("*-cpu*"):
        (runs / stage.name).symlink_to(stage)
    (runs / "tests").symlink_to(failing_run[0] / "tests")
    out = tmp_path / "REPORT.md"
    assert main(["report", "--runs", str(runs), "--out", str(out), "--html", str(tmp_path / "REPORT.html")]) == 0
    markdown, page = out.read_text(), (tmp_path / "REPORT.html").read_text()
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert len(figures) >= 10 and any("tests-screenshot" in f for f in figures)
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == len(figures)
    for figure, source in zip(figures, sources, strict=True):
        kind, data = _figure_bytes(tmp_path / figure)
        assert source == f"data:{kind};base64," + base64.b64encode(data).decode()
    assert any("image/jpeg" in s for s in sources) and any("image/png" in s for s in sources)  # photos, plots
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the web when it opens
    assert page.count("<table>") >= 10 and "<h2>The test suite</h2>" in page
    assert '<b class="bad">tests/test_broken.py</b>' in page and ".bad { color: #c62828;" in page


def test_the_scst_section_gives_diagnostics_and_the_seed_table_when_there_is_one(tmp_path):
    runs = tmp_path / "runs"  # the kept cpu runs (their folders: not the kept seed table)
    runs.mkdir()
    for stage in (REPO / "results" / "demo-cpu").glob("*-cpu*"):
        if stage.is_dir():
            (runs / stage.name).symlink_to(stage)
    out = tmp_path / "REPORT.md"
    assert main(["report", "--runs", str(runs), "--out", str(out)]) == 0
    report = out.read_text()
    scst = report.split("## 5. SCST")[1].split("\n## ")[0]
    assert "| SCST, beam 3 | 0." in scst and "bad endings" in scst and "Across seeds" not in scst
    decoding = "Decoding: grounded decoding at strength 1 and no caption repeats one of its own 2-grams."
    assert decoding in scst and decoding in report.split("## 4. The captioner")[1].split("\n## ")[0]
    (runs / "rl-cpu-seeds.md").write_text("| runs | seeds |\n|---|---|\n| rl-cpu-mean | 0, 1, 2 |\n")
    assert main(["report", "--runs", str(runs), "--out", str(out)]) == 0
    scst = out.read_text().split("## 5. SCST")[1].split("\n## ")[0]
    assert "### Across seeds" in scst and "| rl-cpu-mean | 0, 1, 2 |" in scst


def test_photo_figures_are_jpeg_in_the_page_and_plots_stay_png(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:720, 0:960]
    smooth = np.stack([x / 4, y / 3, (x + y) / 7], axis=-1)  # gradients, with noise: photo-like, not a palette
    photo = (smooth + rng.integers(0, 6, smooth.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photos.png")
    Image.fromarray(photo[:40, :40]).save(tmp_path / "small.png")
    assert (tmp_path / "photos.png").stat().st_size > PHOTO_BYTES
    kind, data = _figure_bytes(tmp_path / "photos.png")
    assert kind == "image/jpeg" and 2 * len(data) < (tmp_path / "photos.png").stat().st_size
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)
    assert decoded.shape == photo.shape and np.abs(decoded - photo).mean() < 3  # the same picture
    assert _figure_bytes(tmp_path / "small.png") == ("image/png", (tmp_path / "small.png").read_bytes())


def _chromium_or_skip() -> None:
    from mllm.report.html import HtmlError, find_browser

    try:
        find_browser()
    except HtmlError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))


def test_the_pdf_keeps_each_figure_whole_on_its_page(tmp_path):
    _chromium_or_skip()
    from pypdf import PdfReader

    rows = "\n".join(f"| row {i} | {i * i} |" for i in range(12))
    text = f"# A report\n\nAn equation, $$e^{{i\\pi}} + 1 = 0$$, and a table:\n\n| a | b |\n|---|---|\n{rows}\n\n"
    for i, colour in enumerate(("red", "green", "blue")):  # each taller than half a page: one a page
        Image.new("RGB", (600, 900), colour).save(tmp_path / f"fig{i}.png")
        text += f"Figure {i}:\n\n![figure {i}](fig{i}.png)\n\n"
    page = markdown_to_html(text, tmp_path)
    assert page.count("data:image/png;base64,") == 3 and "<math" in page
    (tmp_path / "r.html").write_text(page)
    pdf = PdfReader(print_pdf(tmp_path / "r.html", tmp_path / "r.pdf"))
    assert len(pdf.pages) == 4  # the text, then each figure whole on a page of its own
    assert "row 11" in pdf.pages[0].extract_text()
    assert [len(p.images) for p in pdf.pages] == [0, 1, 1, 1]
