"""Checks behind tests/test_tutorial.py: split a tutorial page into blocks, resolve its links to code,
parse its commands, run its python blocks."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from mllm.cli import build_parser
from mllm.training.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial"
PAGES = sorted(TUTORIAL.glob("*.md"))
NUMBERED = [p for p in PAGES if re.match(r"\d+-", p.name)]
SECONDS_PER_PAGE = 30  # the code on a page is an illustration: tiny sizes, no real training

FENCE = re.compile(r"^( *)```\s*([\w+-]*)\s*$")
LINK = re.compile(r"(!?)\[([^\]\n]+)\]\(([^)\s]+)\)")
CODE_NAME = re.compile(r"^`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\))?`$")
COMMAND_SPLIT = {"&&", "||", ";", "|", "&"}


@dataclass
class Block:
    lang: str
    line: int  # line number (1-based) of the block's first code line in the page
    text: str


def split_page(text: str) -> tuple[list[Block], str]:
    """The fenced code blocks of a page, and the prose with the blocks blanked (line numbers kept)."""
    blocks, prose, lang, start, indent, lines = [], [], None, 0, 0, []
    for i, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if lang is None and fence:  # a fence may be indented (a block inside a list item)
            indent, lang, start, lines = len(fence.group(1)), fence.group(2).lower(), i + 1, []
            prose.append("")
        elif lang is not None and line.strip() == "```":
            blocks.append(Block(lang, start, "\n".join(lines)))
            lang = None
            prose.append("")
        elif lang is not None:
            lines.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            prose.append("")
        else:
            prose.append(line)
    if lang is not None:
        raise AssertionError(f"a ```{lang} block opened at line {start - 1} is never closed")
    return blocks, "\n".join(prose)


# ---------------------------------------------------------------------------------------------- code names


@cache
def defined_names(path: Path) -> dict[str, set[str]]:
    """{"": top-level names, "Class": its methods, class attributes and self.attributes} of a .py file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: dict[str, set[str]] = {"": set()}

    def assigned(node: ast.AST) -> list[str]:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t.id for t in targets if isinstance(t, ast.Name)]

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[""].add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names[""].update(assigned(node))
        if isinstance(node, ast.ClassDef):
            members = names.setdefault(node.name, set())
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    members.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    members.update(assigned(item))
            for sub in ast.walk(node):  # self.x = ... in any method
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) \
                        and isinstance(sub.value, ast.Name) and sub.value.id == "self":
                    members.add(sub.attr)
    return names


def name_problem(name: str, path: Path) -> str | None:
    """None if `name` ("f", "Class" or "Class.member") is defined in the file `path`, else why not."""
    parts = name.split(".")
    names = defined_names(path)
    if parts[0] not in names[""]:
        return f"{path.relative_to(REPO)} defines no top-level {parts[0]!r}"
    if len(parts) == 2 and parts[1] not in names.get(parts[0], set()):
        return f"{path.relative_to(REPO)}: {parts[0]!r} is not a class there, or has no member {parts[1]!r}"
    if len(parts) > 2:
        return f"{name!r}: link to `Name` or `Class.member`, not deeper"
    return None


# ---------------------------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_$\\]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = split_page(path.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*#*$", prose, re.M)}


def link_problems(text: str, page: Path) -> list[str]:
    """Every relative link of a page (`page`: where it lives) that does not resolve, with its line."""
    _, prose = split_page(text)
    problems = []
    for n, line in enumerate(prose.splitlines(), 1):
        for m in LINK.finditer(line):
            label, target = m.group(2), m.group(3)
            where = f"{page.name}:{n}: [{label}]({target})"
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, fragment = target.partition("#")
            path = (page.parent / file_part).resolve() if file_part else page
            if not path.is_relative_to(REPO):
                problems.append(f"{where}: points outside the repository")
                continue
            if not path.exists():
                problems.append(f"{where}: {path.relative_to(REPO)} does not exist")
                continue
            if fragment and path.suffix == ".py":
                problems.append(f"{where}: no line anchors into code (they drift); link the file and name the "
                                f"function in the link text")
            elif fragment and path.suffix == ".md" and fragment not in anchors(path):
                problems.append(f"{where}: {path.relative_to(REPO)} has no heading with anchor #{fragment}")
            code = CODE_NAME.match(label.strip())
            if code and path.suffix == ".py" and code.group(1) != path.name:
                problem = name_problem(code.group(1), path)
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems


# ---------------------------------------------------------------------------------------------- commands


def commands(block: str) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments dropped, split at && ; |."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        current: list[str] = []
        for token in lexer:
            if token in COMMAND_SPLIT:
                out.append(current)
                current = []
            else:
                current.append(token)
        out.append(current)
    return [c for c in out if c]


def main_py_problem(argv: list[str]) -> str | None:
    """None if `python main.py argv` parses with the real CLI and its config overrides load."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        message = (err.getvalue().strip().splitlines() or [f"exit status {e.code}"])[-1]
        return None if e.code == 0 else f"main.py does not accept it: {message}"
    if args.command.startswith("train-"):
        try:
            load_config(args.config, args.preset or "cpu", args.overrides)
        except ConfigError as e:
            return f"config: {e}"
    return None


def command_problem(cmd: list[str]) -> str | None:
    while cmd and re.match(r"^[A-Za-z_]\w*=", cmd[0]):  # VAR=value before the command
        cmd = cmd[1:]
    if not cmd:
        return None
    if cmd[0] == "torchrun":
        scripts = [i for i, a in enumerate(cmd) if a.endswith(".py")]
        return main_py_problem(cmd[scripts[0] + 1 :]) if scripts and cmd[scripts[0]] == "main.py" else None
    if cmd[0] == "make":
        targets = re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(encoding="utf-8"), re.M)
        missing = [t for t in cmd[1:] if "=" not in t and not t.startswith("-") and t not in targets]
        return f"no make target {missing}" if missing else None
    if cmd[0] not in ("python", "python3") or len(cmd) < 2:
        return None
    if cmd[1] == "-c":
        try:
            compile(cmd[2], "<python -c>", "exec")
        except (SyntaxError, IndexError) as e:
            return f"python -c: {e}"
        return None
    if cmd[1] == "-m":
        if importlib.util.find_spec(cmd[2]) is None:
            return f"no module {cmd[2]!r}"
        if cmd[2] == "pytest":
            missing = [a for a in cmd[3:] if not a.startswith("-") and "/" in a
                       and not (REPO / a.split("::")[0]).exists()]
            return f"pytest paths not found: {missing}" if missing else None
        return None
    if not (REPO / cmd[1]).is_file():
        return f"no script {cmd[1]}"
    return main_py_problem(cmd[2:]) if cmd[1] == "main.py" else None


def command_problems(text: str, page: Path) -> list[str]:
    blocks, _ = split_page(text)
    problems = []
    for block in blocks:
        if block.lang in ("bash", "sh", "shell", "console"):
            for cmd in commands(block.text):
                problem = command_problem(cmd)
                if problem:
                    problems.append(f"{page.name}, block at line {block.line}: `{shlex.join(cmd)}`: {problem}")
    return problems


# ---------------------------------------------------------------------------------------------- running code


def run_python_blocks(text: str, page: Path) -> None:
    """Execute the page's python blocks in order in one namespace; errors point at the page's lines."""
    namespace: dict = {"__name__": f"tutorial_{page.stem.replace('-', '_')}"}
    blocks, _ = split_page(text)
    for block in blocks:
        if block.lang in ("python", "py"):
            try:
                tree = ast.parse(block.text, filename=str(page))
            except SyntaxError as e:  # report the page's line, not the block's
                e.lineno = (e.lineno or 1) + block.line - 1
                raise
            ast.increment_lineno(tree, block.line - 1)  # tracebacks give the page's own line numbers
            exec(compile(tree, str(page), "exec"), namespace)


@contextlib.contextmanager
def isolated_torch_state():
    """One thread (the examples are tiny: on a busy machine thread handoffs cost more than the maths), and a
    page may seed, change the default dtype or switch off gradients: none of it leaks into other tests."""
    dtype, grad, threads = torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad)
            torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- the tests
