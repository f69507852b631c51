"""Write every tutorial page (docs/tutorial/NN-*.md) as a Jupyter notebook beside it (NN-*.ipynb).

    python scripts/make_notebooks.py          # regenerate all; tests/test_notebooks.py checks they are current

The page is the one source: each ```python block becomes a code cell, everything else (prose, equations,
pictures, ```bash blocks) markdown cells, in order. A first code cell moves to the repository root, where the
page's code runs in the tests. Notebooks are written without outputs, with fixed cell ids, so a regenerated
notebook equals the committed one byte for byte.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial"
FENCE = re.compile(r"^( *)```\s*([\w+-]*)\s*$")
SETUP = """# Run from the repository root, as the page's code expects (paths such as results/... are relative to it)
import os
import pathlib
import sys

root = pathlib.Path.cwd()
while not (root / "main.py").exists() and root != root.parent:
    root = root.parent
os.chdir(root)
sys.path.insert(0, str(root))"""


def pages() -> list[Path]:
    return sorted(p for p in TUTORIAL.glob("*.md") if re.match(r"\d+-", p.name))


def cells_of(text: str) -> list[tuple[str, str]]:
    """[(kind, source)] of a page: ("code", a python block) or ("markdown", the text between them)."""
    cells, markdown, code, indent = [], [], None, 0
    for line in text.splitlines():
        fence = FENCE.match(line)
        if code is None and fence and fence.group(2).lower() in ("python", "py"):
            code, indent = [], len(fence.group(1))
            cells.append(("markdown", "\n".join(markdown).strip("\n")))
            markdown = []
        elif code is not None and line.strip() == "```":
            cells.append(("code", "\n".join(code)))
            code = None
        elif code is not None:
            code.append(line[indent:])
        else:
            markdown.append(line)
    cells.append(("markdown", "\n".join(markdown).strip("\n")))
    return [(kind, source) for kind, source in cells if source.strip()]


def notebook(page: Path) -> str:
    """The notebook of a page, as the JSON text written to disk."""
    cells = [("markdown", f"*Generated from [{page.name}]({page.name}) by `scripts/make_notebooks.py`: edit the "
                          f"page, not this notebook.*"), ("code", SETUP)]
    cells += cells_of(page.read_text(encoding="utf-8"))
    nb_cells = []
    for i, (kind, source) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"{page.stem[:2]}-{i:03d}", "metadata": {},
                "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        nb_cells.append(cell)
    nb = {"cells": nb_cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}}}
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    for page in pages():
        out = page.with_suffix(".ipynb")
        out.write_text(notebook(page), encoding="utf-8")
        print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
