"""Exercises graded by the project's own tests: write a piece (attention, LayerNorm, the GPT's forward, ...)
in a workspace, and `python main.py exercise check NAME` runs the real tests with your code in its place."""

from .catalog import EXERCISES, Exercise, exercise
from .grade import Result, check, check_many
from .workspace import ExerciseError, paste_solution, solution, start

__all__ = ["EXERCISES", "Exercise", "ExerciseError", "Result", "check", "check_many", "exercise",
           "paste_solution", "solution", "start"]
