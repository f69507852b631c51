"""An exercise's workspace (./exercises/NAME/ by default): the stub to fill in, the hints seen so far,
and the project's own code as the solution."""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

from .catalog import Exercise, exercise

STUBS = Path(__file__).with_name("stubs")
DEFAULT_ROOT = Path("exercises")


class ExerciseError(Exception):
    """A problem with a workspace, said with what to do."""


def workspace(name: str, root: Path = DEFAULT_ROOT) -> Path:
    return root / name


def learner_file(name: str, root: Path = DEFAULT_ROOT) -> Path:
    return workspace(name, root) / f"{name}.py"


def start(name: str, root: Path = DEFAULT_ROOT, force: bool = False) -> Path:
    """Write the stub of exercise `name` into its workspace; an existing file is kept unless `force`."""
    ex = exercise(name)
    path = learner_file(name, root)
    if path.exists() and not force:
        raise ExerciseError(f"{path} already exists (your work so far); edit it, or start again with --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((STUBS / f"{name}.py").read_text(encoding="utf-8"), encoding="utf-8")
    (path.parent / ".hints").unlink(missing_ok=True)
    (path.parent / "README.md").write_text(readme(ex, path), encoding="utf-8")
    return path


def readme(ex: Exercise, path: Path) -> str:
    return (f"# Exercise `{ex.name}`: {ex.title}\n\nWrite {', '.join(f'`{t}`' for t in ex.targets)} in "
            f"`{path.name}`, then\n\n    python main.py exercise check {ex.name}\n\nIt runs the project's own "
            f"tests with your code in place of `{ex.module}`'s. Stuck: `python main.py exercise hint {ex.name}`. "
            f"The project's code: `python main.py exercise solution {ex.name}`.\n\nWhen it passes: {ex.expect}\n\n"
            f"The idea and the equations: {ex.page}\n")


def next_hint(name: str, root: Path = DEFAULT_ROOT) -> tuple[int, str]:
    """The next hint not yet seen in this workspace (the last one again once all are seen): (number, text)."""
    ex = exercise(name)
    seen_file = workspace(name, root) / ".hints"
    seen = int(seen_file.read_text()) if seen_file.exists() else 0
    number = min(seen + 1, len(ex.hints))
    if seen_file.parent.is_dir():
        seen_file.write_text(str(number))
    return number, ex.hints[number - 1]


def project_source(ex: Exercise, target: str) -> str:
    """The project's own code of one target (a function, or a method as written in its class)."""
    module = importlib.import_module(ex.module)
    owner, _, member = target.rpartition(".")
    obj = getattr(getattr(module, owner), member) if owner else getattr(module, member)
    return inspect.getsource(obj)


def solution(name: str) -> str:
    """The project's own code for every target of the exercise, each headed by its module."""
    ex = exercise(name)
    return "\n".join(f"# {ex.module}: {t}\n{textwrap.dedent(project_source(ex, t))}" for t in ex.targets)


def replace_definition(source: str, target: str, code: str) -> str:
    """`source` with the definition of `target` ("f" or "Class.method") replaced by `code` (indented as needed)."""
    owner, _, member = target.rpartition(".")
    body = ast.parse(source).body
    if owner:
        cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls is None:
            raise ExerciseError(f"no class {owner} in the file")
        body, indent = cls.body, "    "
    else:
        indent = ""
    node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == member), None)
    if node is None:
        raise ExerciseError(f"no definition of {target} in the file")
    lines = source.splitlines(keepends=True)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    new = textwrap.indent(textwrap.dedent(code), indent)
    return "".join(lines[:first]) + new + "".join(lines[node.end_lineno:])


def paste_solution(name: str, root: Path = DEFAULT_ROOT) -> Path:
    """Put the project's code in place of every target in the learner's file (what a test does)."""
    ex = exercise(name)
    path = learner_file(name, root)
    source = path.read_text(encoding="utf-8")
    for target in ex.targets:
        source = replace_definition(source, target, project_source(ex, target))
    path.write_text(source, encoding="utf-8")
    return path
