"""`python main.py exercise list | start NAME | check NAME | hint NAME | solution NAME`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .catalog import EXERCISES, exercise
from .grade import check
from .workspace import ExerciseError, learner_file, next_hint, solution, start


def add_exercise_parser(sub) -> None:
    """The `exercise` subcommand and its actions."""
    p = sub.add_parser("exercise", help="build a piece yourself; the project's own tests grade it "
                                        "(list, start, check, hint, solution)")
    p.add_argument("action", choices=["list", "start", "check", "hint", "solution"])
    p.add_argument("name", nargs="?", help="the exercise (python main.py exercise list)")
    p.add_argument("--dir", default="exercises", help="where workspaces live (default ./exercises)")
    p.add_argument("--force", action="store_true", help="start: overwrite an existing workspace file")
    p.set_defaults(func=exercise_command)


def exercise_command(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if args.action == "list":
        width = max(len(e.name) for e in EXERCISES)
        for e in EXERCISES:
            state = "started" if learner_file(e.name, root).exists() else ""
            print(f"{e.name:<{width}}  {e.title:<52} {e.page.split('/')[-1]:<18} {state}")
        print("\nStart one: python main.py exercise start NAME")
        return 0
    if not args.name:
        print(f"`exercise {args.action}` needs an exercise name: python main.py exercise {args.action} NAME "
              f"(python main.py exercise list shows them)")
        return 2
    try:
        ex = exercise(args.name)
        if args.action == "start":
            path = start(ex.name, root, args.force)
            print(f"Wrote {path}: write {', '.join(ex.targets)} there, then run\n"
                  f"  python main.py exercise check {ex.name}\nThe idea and the equations: {ex.page}")
        elif args.action == "hint":
            number, text = next_hint(ex.name, root)
            print(f"Hint {number} of {len(ex.hints)}: {text}")
        elif args.action == "solution":
            print(solution(ex.name), end="")
        else:
            result = check(ex.name, learner_file(ex.name, root))
            print(result.text())
            return 0 if result.passed else 1
    except (ExerciseError, ValueError) as e:
        print(f"error: {e}")
        return 2
    return 0
