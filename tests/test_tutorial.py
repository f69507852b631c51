"""The tutorial (docs/tutorial/*.md) cannot drift from the code.

Every page found there is checked the same way, so pages added later are covered without a change here:

- its ```python blocks run, in order, in one namespace per page (fresh for each page), from the
  repository root; a failure points at the page and its line. Use ```bash or ```text for what must
  not run;
- every relative link resolves to a file in the repository (no #L line anchors: they drift); a link
  whose text is a code name, [`GPT.forward`](../../mllm/language/gpt.py), must point at a .py file
  that defines it (a function, class, method, class attribute or `self.` attribute, read with `ast`);
- every command in its ```bash blocks that runs `python main.py ...` parses with the real CLI, and its
  key=value overrides are accepted by the config; `python <script>`, `python -m <module>` (and the
  paths given to pytest), `make <target>` must exist;
- the index (docs/tutorial/README.md) links every numbered page, in order;
- every numbered page has its notebook beside it (NN-*.ipynb), equal to what scripts/make_notebooks.py makes
  from the page now, and the notebooks execute in a Jupyter kernel (those in SLOW_NOTEBOOKS are only
  generated, not run);
- the tutorial shows at least five diagrams.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import pytest
from tutorial_pages import (
    CODE_NAME,
    LINK,
    NUMBERED,
    PAGES,
    REPO,
    SECONDS_PER_PAGE,
    TUTORIAL,
    command_problems,
    isolated_torch_state,
    link_problems,
    run_python_blocks,
    split_page,
)


def page_id(page: Path) -> str:
    return page.name


def test_the_tutorial_has_its_pages():
    assert [p.name[:3] for p in NUMBERED][:4] == ["00-", "01-", "02-", "03-"], f"found {[p.name for p in PAGES]}"
    numbers = [int(p.name.split("-")[0]) for p in NUMBERED]
    assert len(numbers) == len(set(numbers)), f"two pages share a number: {[p.name for p in NUMBERED]}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_run(page, monkeypatch):
    monkeypatch.chdir(REPO)
    start = time.perf_counter()
    with isolated_torch_state():
        run_python_blocks(page.read_text(encoding="utf-8"), page)
    seconds = time.perf_counter() - start
    assert seconds < SECONDS_PER_PAGE, f"{page.name}: its code took {seconds:.1f}s; keep the examples tiny"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_resolve(page):
    problems = link_problems(page.read_text(encoding="utf-8"), page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_shell_commands_exist(page):
    problems = command_problems(page.read_text(encoding="utf-8"), page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", NUMBERED, ids=page_id)
def test_each_page_has_running_code_and_links_to_the_code(page):
    text = page.read_text(encoding="utf-8")
    blocks, prose = split_page(text)
    assert any(b.lang in ("python", "py") for b in blocks), f"{page.name} has no ```python block"
    code_links = [m for m in LINK.finditer(prose) if CODE_NAME.match(m.group(2)) and m.group(3).endswith(".py")]
    assert code_links, f"{page.name} links to no function or class in the code"


def test_the_readme_links_resolve():
    readme = REPO / "README.md"
    for doc in (readme, REPO / "docs" / "challenges.md"):
        problems = link_problems(doc.read_text(encoding="utf-8"), doc)
        assert not problems, "\n".join(problems)
    assert not re.search(r"issue #?\d+|issue's bar", readme.read_text(encoding="utf-8"), re.I)


def test_no_page_cites_an_issue():
    for page in [*PAGES, REPO / "docs" / "challenges.md"]:
        found = re.findall(r".{0,40}(?:issue #?\d+|the issue's).{0,20}", page.read_text(encoding="utf-8"), re.I)
        assert not found, f"{page.name}: {found} (run provenance belongs in results/*/README.md)"


def test_the_index_lists_every_page_in_order():
    index = TUTORIAL / "README.md"
    _, prose = split_page(index.read_text(encoding="utf-8"))
    linked = [m.group(3) for m in LINK.finditer(prose) if not m.group(1)]
    pages = [t for t in linked if t in {p.name for p in NUMBERED}]
    assert pages == [p.name for p in NUMBERED], f"the index links {pages}, the pages are {[p.name for p in NUMBERED]}"


# ---------------------------------------------------------------------------------------------- the checker itself


def test_the_checks_catch_broken_pages():
    """A broken link, name, command or code block is reported (so the checks above can fail)."""
    page = TUTORIAL / "99-example.md"  # not written: only where relative links start from
    good = ("[`GPT.forward`](../../mllm/language/gpt.py) [`causal_mask`](../../mllm/transformer/attention.py) "
            "[`ViT.cls_token`](../../mllm/vision/vit.py) [file](../../mllm/language/gpt.py)\n")
    assert link_problems(good, page) == []
    bad = {
        "[`GPT.backward`](../../mllm/language/gpt.py)": "no member 'backward'",
        "[`causal_maskk`](../../mllm/transformer/attention.py)": "no top-level 'causal_maskk'",
        "[`GPT`](../../mllm/language/gptt.py)": "does not exist",
        "[`GPT`](../../mllm/language/gpt.py#L40)": "no line anchors",
        "[README](../../README.md#no-such-heading)": "no heading",
    }
    for text, message in bad.items():
        problems = link_problems(text, page)
        assert len(problems) == 1 and message in problems[0], (text, problems)
    assert link_problems("```bash\n[`nope`](../../nope.py)\n```\n", page) == []  # code blocks hold no links

    shell = ("```bash\npython main.py train-llm --preset tiny train.lr=1e-3  # a comment\n"
             "python main.py generate runs/x --top-p 0.9 && python -m pytest -q tests/test_gpt.py\n```\n")
    assert command_problems(shell, page) == []
    for cmd, message in {
        "python main.py train-llm train.no_such_key=1": "config",
        "python main.py generate runs/x --no-such-flag": "does not accept",
        "python main.py train-gpt": "does not accept",
        "python scripts/no_such.py": "no script",
        "python -m pytest tests/test_nothing.py": "not found",
    }.items():
        problems = command_problems(f"```bash\n{cmd}\n```\n", page)
        assert len(problems) == 1 and message in problems[0], (cmd, problems)

    with pytest.raises(AssertionError) as failure:
        run_python_blocks("text\n\n```python\nx = 1\n```\n\n```python\nassert x == 2, 'x is 1'\n```\n", page)
    assert failure.traceback[-1].lineno + 1 == 8  # the page's line (pytest counts from 0)
    with pytest.raises(SyntaxError) as failure:
        run_python_blocks("text\n\n```python\nx = (\n```\n", page)
    assert failure.value.lineno == 4
    with pytest.raises(AssertionError, match="never closed"):
        split_page("```python\nx = 1\n")


# ---------------------------------------------------------------------------------------------- notebooks

SLOW_NOTEBOOKS: set[str] = set()  # pages whose code is too slow to execute as a notebook in the suite (none now)
NOTEBOOK_SECONDS = 60  # per notebook, kernel start included


def _maker():
    spec = importlib.util.spec_from_file_location("make_notebooks", REPO / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", NUMBERED, ids=page_id)
def test_each_page_has_its_notebook_and_it_is_current(page):
    path = page.with_suffix(".ipynb")
    assert path.exists(), f"{path.name} is missing: run `python scripts/make_notebooks.py`"
    assert path.read_text(encoding="utf-8") == _maker().notebook(page), \
        f"{path.name} differs from {page.name}: edit the page, then run `python scripts/make_notebooks.py`"


@pytest.mark.parametrize("page", [p for p in NUMBERED if p.name not in SLOW_NOTEBOOKS], ids=page_id)
def test_notebooks_execute(page, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    nb = nbformat.read(page.with_suffix(".ipynb"), as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=NOTEBOOK_SECONDS, kernel_name="python3",
                            resources={"metadata": {"path": str(TUTORIAL)}}).execute()
    assert time.perf_counter() - start < NOTEBOOK_SECONDS
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors


def test_the_tutorial_has_at_least_five_diagrams():
    shown = {m.group(3) for p in PAGES for m in LINK.finditer(split_page(p.read_text(encoding="utf-8"))[1])
             if m.group(1) and re.search(r"figures/[\w-]+\.(png|svg)$", m.group(3))}
    assert len(shown) >= 5, f"the pages show {sorted(shown)}"
    for name in shown:
        assert (TUTORIAL / name).exists(), name
