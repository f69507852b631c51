"""The demo pipeline's progress lines: each stage's start with the time elapsed and an estimate of what is left."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mllm.pipeline import Stage


class Progress:
    """One line per stage: elapsed time and an estimate of what is left, scaled by how fast stages ran here."""

    def __init__(self, stages: list[Stage], preset: str, done: set[str]):
        self.stages, self.preset, self.done, self.start = stages, preset, done, time.time()
        self.expected_done = self.actual_done = 0.0

    def minutes_left(self, index: int) -> float | None:
        """The expected minutes of the stages not yet finished, scaled by this machine's speed so far."""
        rest = [s.minutes.get(self.preset) for s in self.stages[index:] if s.name not in self.done]
        if any(m is None for m in rest):
            return None
        speed = self.actual_done / self.expected_done if self.expected_done > 1.0 else 1.0
        return speed * sum(rest)

    def begin(self, index: int, what: str) -> None:
        left = self.minutes_left(index)
        estimate = f"about {left:.0f} min left" if left is not None else "no estimate for this preset"
        print(f"\n== [{index + 1}/{len(self.stages)}] {self.stages[index].name}: {what}  "
              f"(elapsed {(time.time() - self.start) / 60:.1f} min, {estimate}) ==", flush=True)

    def end(self, index: int, seconds: float, ran: bool, fresh: bool) -> None:
        """`fresh`: the stage ran from its start, so its time measures this machine (not a skip or a resume)."""
        self.done.add(self.stages[index].name)
        if fresh:
            self.expected_done += self.stages[index].minutes.get(self.preset) or 0.0
            self.actual_done += seconds / 60
        print(f"== {self.stages[index].name} {'done' if ran else 'skipped'} in {seconds / 60:.1f} min ==", flush=True)
