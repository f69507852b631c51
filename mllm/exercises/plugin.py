"""A pytest plugin that puts a learner's code in place of the project's before the tests are collected.

`python -m pytest -p mllm.exercises.plugin` with MLLM_EXERCISES = "name=path;name=path" (an exercise and the
learner's file) and MLLM_EXERCISE_REPORT = a JSON file to write each test's outcome into. For a target
"Class.method" the learner's class's method is set on the project's class (every instance and subclass uses
it); for a function, every loaded module that holds the project's function gets the learner's instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from types import CellType, FunctionType, ModuleType
from typing import Any

import pytest

from .catalog import exercise

_REPLACED: list[tuple[object, object]] = []  # (project's function, learner's function)
_RESULTS: dict[str, Any] = {"tests": [], "load_error": None}


def load_learner_module(name: str, path: Path) -> ModuleType:
    """Import the learner's file as a module of its own (not on sys.path: nothing else can import it)."""
    spec = importlib.util.spec_from_file_location(f"mllm_exercise_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def substitute(name: str, path: Path) -> None:
    """Put the learner's targets of exercise `name` (from the file `path`) in place of the project's."""
    ex = exercise(name)
    learner = load_learner_module(name, path)
    target_module = importlib.import_module(ex.module)
    for target in ex.targets:
        owner, _, member = target.rpartition(".")
        if owner:
            theirs = getattr(learner, owner, None)
            if theirs is None or member not in vars(theirs):
                raise AttributeError(f"{path.name} has no {target}: keep the class {owner} and write its "
                                     f"method {member} in it")
            ours = getattr(target_module, owner)
            setattr(ours, member, rebind(vars(theirs)[member], ours))
            for name, helper in vars(theirs).items():  # helper methods of the learner's own, new to the class
                if isinstance(helper, FunctionType) and not hasattr(ours, name):
                    setattr(ours, name, rebind(helper, ours))
        else:
            if not callable(getattr(learner, member, None)):
                raise AttributeError(f"{path.name} has no function {member}: keep its name and signature")
            _REPLACED.append((getattr(target_module, member), getattr(learner, member)))
    sweep()


def rebind(function: Any, cls: type) -> Any:
    """The learner's method with zero-argument super() pointing at the project's class, not the learner's."""
    if not isinstance(function, FunctionType) or "__class__" not in function.__code__.co_freevars:
        return function
    cells = tuple(CellType(cls) if name == "__class__" else cell
                  for name, cell in zip(function.__code__.co_freevars, function.__closure__, strict=True))
    new = FunctionType(function.__code__, function.__globals__, function.__name__, function.__defaults__, cells)
    new.__kwdefaults__, new.__doc__ = function.__kwdefaults__, function.__doc__
    return new


def sweep() -> None:
    """Every loaded module holding a replaced function by name gets the learner's (they import it by name)."""
    for module in list(sys.modules.values()):
        space = getattr(module, "__dict__", None)
        if not space or module.__name__.startswith("mllm_exercise_"):
            continue
        for key, value in list(space.items()):
            for ours, theirs in _REPLACED:
                if value is ours:
                    space[key] = theirs


def pytest_configure(config: pytest.Config) -> None:
    for item in filter(None, os.environ.get("MLLM_EXERCISES", "").split(";")):
        name, _, path = item.partition("=")
        try:
            substitute(name, Path(path))
        except Exception as e:  # the learner's file does not import, or lacks a target: say so, run nothing
            lines = traceback.format_exception_only(type(e), e)
            _RESULTS["load_error"] = {"exercise": name, "message": "".join(lines).strip(),
                                      "line": _learner_line(e, Path(path))}
            _write()
            raise pytest.UsageError(f"exercise {name}: {path} could not be used: {lines[-1].strip()}") from e


def _learner_line(error: BaseException, path: Path) -> int | None:
    if isinstance(error, SyntaxError):
        return error.lineno
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
    return frames[-1].lineno if frames else None


def pytest_collection_finish(session: pytest.Session) -> None:
    sweep()  # test modules imported the functions by name while they were collected


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        message = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr)
        _RESULTS["tests"].append({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                                  "message": message[:2000]})


def pytest_sessionfinish(session: pytest.Session) -> None:
    _write()


def _write() -> None:
    out = os.environ.get("MLLM_EXERCISE_REPORT")
    if out:
        Path(out).write_text(json.dumps(_RESULTS, indent=1), encoding="utf-8")
