"""`python main.py demo`: every stage in order, then the report; finished stages are skipped, a stopped one resumes.

    data -> reverse -> vit -> align -> gpt -> captioner -> blind -> scst -> tests -> report

The test stage keeps the suite's result per file and a picture of its console under <runs>/tests/ (the tiny
preset runs the core's test files only, unless --tests).

A training stage is finished when its run folder holds summary.json (written last, atomically); it is then
skipped if its config is the one this command would train, and an error naming the differing keys if not. Where
only the decoding settings (eval.*) of a finished captioner or SCST run differ, its test report is written again
from its best.pt instead (`mllm/rescore.py`; the previous report kept beside it). A run folder with last.pt but no
summary.json was stopped mid-way: it is resumed from its last checkpoint.
Each run records the sha256 of every checkpoint it started from (init.vision, init.text, init.captioner); a
run whose starting checkpoint has changed since (its ViT, say, was trained again) is stale: its folder is
moved aside to <run>.stale-N and the stage trains afresh, and so on down the chain.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm.io import atomic_write_json
from mllm.progress import Progress
from mllm.training.config import DERIVED, ConfigError, config_diff, flatten, load_config, with_added_keys
from mllm.training.launch import WHERE_KEYS
from mllm.training.lineage import changed_inits, init_paths
from mllm.training.loop import TrainingError

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline. Training stages name their command, config and run folder (under --runs)."""

    name: str
    title: str
    minutes: dict[str, float]  # minutes per preset measured alone on 2 CPU cores, for the estimate
    command: str | None = None
    config: str | None = None
    run: str | None = None  # run folder name, {preset} filled in
    overrides: tuple[str, ...] = ()
    inits: tuple[tuple[str, str], ...] = ()  # (config key, run folder) pairs that chain the stages


STAGES = (
    Stage("data", "prepare CIFAR-10, Tiny Shakespeare and Flickr8k", {"tiny": 0.1, "cpu": 3}),
    Stage("reverse", "Transformer core: reverse digit strings", {"tiny": 0.3, "cpu": 0.3}, run="reverse-{preset}"),
    Stage("vit", "Vision Transformer on CIFAR-10", {"tiny": 0.2, "cpu": 23}, "train-vit", "vit", "vit-{preset}"),
    Stage("align", "the ViT aligned with Flickr8k captions", {"tiny": 0.3, "cpu": 33}, "train-align", "align",
          "align-{preset}", inits=(("init.vision", "vit-{preset}"),)),
    Stage("gpt", "char GPT on Tiny Shakespeare", {"tiny": 0.2, "cpu": 14}, "train-llm", "gpt", "gpt-{preset}"),
    Stage("captioner", "captioner on Flickr8k", {"tiny": 0.4, "cpu": 49}, "train-mllm", "mllm", "mllm-{preset}",
          inits=(("init.vision", "align-{preset}"), ("init.text", "gpt-{preset}"))),
    Stage("blind", "blind captioner (the baseline without the image)", {"tiny": 0.4, "cpu": 26}, "train-mllm",
          "mllm", "mllm-{preset}-blind", ("model.blind=true",),
          inits=(("init.vision", "vit-{preset}"), ("init.text", "gpt-{preset}"))),
    Stage("scst", "SCST fine-tuning on CIDEr-D", {"tiny": 0.3, "cpu": 22}, "train-rl", "rl", "rl-{preset}",
          inits=(("init.captioner", "mllm-{preset}"),)),
    Stage("tests", "the test suite", {"tiny": 0.4, "cpu": 6}),
    Stage("report", "the report", {"tiny": 0.1, "cpu": 0.5}),
)
LOCATION_PREFIXES = ("init.",)  # where a run's starting weights are, not what it is
REVERSE_ARGS = {"tiny": ["--steps", "100", "--target", "0.2"]}  # a smoke run: a few seconds, not the full 0.99
# The tiny demo's test stage: the Transformer core's files without their two reversal trainings (minutes each;
# the demo's reverse stage trains the same model), so the smoke run stays short; --tests runs the whole suite.
TINY_TESTS = ("tests/test_attention.py", "tests/test_blocks.py", "tests/test_transformer.py",
              "-k", "not learns_to_reverse and not step_budget")


def stage_overrides(stage: Stage, preset: str, runs: Path) -> list[str]:
    """The stage's overrides, with each init that the preset sets pointed at the run folder under `runs`."""
    preset_cfg = flatten(load_config(stage.config, preset))
    inits = [f"{key}={runs / folder.format(preset=preset)}" for key, folder in stage.inits
             if preset_cfg.get(key) is not None]
    return [*stage.overrides, *inits]


def _ignored(key: str, saved: Any, fresh: Any, fresh_flat: dict[str, Any]) -> bool:
    """Differences that do not make another run: where it read data, the path (not the presence) of its
    starting weights, a count derived when the run started (0 = from epochs), the config's type hints."""
    return (key in WHERE_KEYS or key.startswith("types.") or key == "preset"
            or (key.startswith(LOCATION_PREFIXES) and saved is not None and fresh is not None)
            or (key in DERIVED and fresh == 0 and fresh_flat.get(DERIVED[key], 0) > 0))


def config_changes(run_dir: Path, stage: Stage, preset: str, overrides: list[str]) -> dict[str, tuple]:
    """Keys whose value in the run folder's config differs from what this command would train."""
    saved, _ = with_added_keys(json.loads((run_dir / "config.json").read_text()), stage.config)  # as on resume
    fresh = load_config(stage.config, preset, overrides)
    flat = flatten(fresh)
    return {k: v for k, v in config_diff(saved, fresh).items() if not _ignored(k, v[0], v[1], flat)}


def check_config(run_dir: Path, stage: Stage, preset: str, overrides: list[str], state: str,
                 changes: dict[str, tuple] | None = None) -> None:
    """An error naming the keys if the run in `run_dir` (finished or stopped) is not what this command trains
    (`changes`: its config_changes, when already computed)."""
    changes = config_changes(run_dir, stage, preset, overrides) if changes is None else changes
    if changes:
        listing = ", ".join(f"{k}: {a!r} (run) vs {b!r} (this command)" for k, (a, b) in changes.items())
        raise ConfigError(f"{run_dir} holds a {state} {stage.name} run with another config ({listing}); "
                          f"move it away, or pass --runs NEW_FOLDER to train every stage afresh")


def stale_inits(run_dir: Path, stage: Stage, preset: str, overrides: list[str]) -> list[str]:
    """How the checkpoints the run in `run_dir` started from differ from those this command starts from (none:
    the same bytes). The record is in summary.json (finished) or last.pt (stopped)."""
    from mllm.checkpoint import load_checkpoint

    current = init_paths(load_config(stage.config, preset, overrides))
    if not current:
        return []
    summary = run_dir / "summary.json"
    record = (json.loads(summary.read_text()) if summary.is_file()
              else load_checkpoint(run_dir / "last.pt")).get("inits")
    config = run_dir / "config.json"
    return changed_inits(record, current, config.stat().st_mtime if config.is_file() else None)


def move_aside(run_dir: Path) -> Path:
    """Rename a run folder to <name>.stale-N (the first N free) and return the new path."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.stale-{n}")).exists():
        n += 1
    return run_dir.rename(target)


def run_training_stage(stage: Stage, preset: str, runs: Path, data_args: list[str]) -> str:
    """Train the stage's run unless it is finished; resume it if it was stopped; train it afresh if a checkpoint
    it started from changed since (the old folder kept as <run>.stale-N); re-score a finished captioner or SCST run
    whose decoding settings alone differ. Returns skipped, rescored, resumed or fresh."""
    from mllm.cli import main as cli

    run_dir = runs / stage.run.format(preset=preset)
    overrides = stage_overrides(stage, preset, runs)
    state = "finished" if (run_dir / "summary.json").is_file() else "stopped" if (run_dir / "last.pt").is_file() \
        else None
    decoding = []  # a finished captioner or SCST run whose decoding alone differs is re-scored, not retrained
    if state is not None:
        differ = config_changes(run_dir, stage, preset, overrides)
        if state == "finished" and stage.config in ("mllm", "rl"):
            from mllm.rescore import decoding_overrides

            decoding = decoding_overrides(differ, run_dir)
        if not decoding:
            check_config(run_dir, stage, preset, overrides, state, differ)
        changes = stale_inits(run_dir, stage, preset, overrides)
        if changes:
            moved = move_aside(run_dir)
            print(f"{run_dir} holds a {state} {stage.name} run that is stale: {'; '.join(changes)}. Training "
                  f"{stage.name} again from the new checkpoint (the old run is kept in {moved}; delete it when "
                  f"no longer needed)")
        elif decoding:
            from mllm.rescore import rescore_in_place

            flags = dict(zip(data_args[::2], data_args[1::2], strict=True))
            rescore_in_place(run_dir, decoding, flags.get("--data-mirror"), flags.get("--data-root"),
                             inits=[o for o in overrides if o.startswith("init.")])
            return "rescored"
    if (run_dir / "summary.json").is_file():
        print(f"{run_dir} is finished with this config: skipped")
        return "skipped"
    argv = [stage.command, "--preset", preset, "--run-dir", str(run_dir), *data_args]
    if (run_dir / "last.pt").is_file():
        print(f"{run_dir} was stopped before it finished: resuming from its last.pt")
        argv += ["--resume", *stage.overrides]  # the saved config holds the inits (their paths may differ now)
    else:
        argv += overrides
    if cli(argv) != 0:
        raise TrainingError(f"stage {stage.name} failed (the error is above): python main.py {' '.join(argv)}")
    if not (run_dir / "summary.json").is_file():  # stopped by a signal: the trainer kept last.pt
        raise TrainingError(f"stage {stage.name} stopped before it finished ({run_dir / 'last.pt'} kept): run the "
                            f"same command again to resume it")
    return "resumed" if "--resume" in argv else "fresh"


def suite_args(preset: str, full: bool | None) -> tuple[str, ...] | None:
    """pytest's arguments for the test stage: the whole suite, or for the tiny smoke run (unless --tests) the core's
    three files; None when the stage is left out (--no-tests)."""
    if full is False:
        return None
    return TINY_TESTS if preset == "tiny" and full is None else ()


def run_tests(out: Path, args: tuple[str, ...] = ()) -> dict[str, Any]:
    """The test stage: the suite's result per file and per test, its console and a picture of it, under `out`."""
    from mllm.report.testrun import run_tests as run

    return run(out, args)


def check_plan(stages: list[Stage], preset: str, runs: Path) -> None:
    """Before anything runs: the preset exists for every stage, and a skipped stage that a later one starts
    from has a finished run already."""
    names = {s.name for s in stages}
    for stage in stages:
        if stage.config is None:
            continue
        load_config(stage.config, preset)  # an unknown preset is an error naming the presets there are
        active = stage_overrides(stage, preset, runs)
        for key, folder in stage.inits:
            source = next(s for s in STAGES if s.run == folder)
            target = runs / folder.format(preset=preset)
            if any(o.startswith(f"{key}=") for o in active) and source.name not in names \
                    and not (target / "summary.json").is_file():
                raise ConfigError(f"--skip {source.name}: the {stage.name} stage starts from {target} ({key}), "
                                  f"which holds no finished run; train it, or skip {stage.name} too")


def run_demo(preset: str = "cpu", data_root: str | None = None, mirror: str | None = None, runs: str = "runs",
             tests: bool | None = None, skip: tuple[str, ...] = ()) -> int:
    """Run the stages in order (see the module docstring); returns 0 when the report is written."""
    from mllm.cli import main as cli
    from mllm.data.prepare import prepare_all
    from mllm.report import write_report

    runs_dir = Path(runs)
    pytest_args = suite_args(preset, tests)
    stages = [s for s in STAGES if s.name not in skip and (pytest_args is not None or s.name != "tests")]
    check_plan(stages, preset, runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    data_args = ["--data-root", data_root or "data"] + (["--data-mirror", mirror] if mirror else [])
    done = {s.name for s in stages if s.run and (runs_dir / s.run.format(preset=preset) / "summary.json").is_file()}
    progress, log_path = Progress(stages, preset, done), runs_dir / f"pipeline-{preset}.json"
    record = json.loads(log_path.read_text()) if log_path.is_file() else {}
    for i, stage in enumerate(stages):
        progress.begin(i, stage.title)
        start, state = time.time(), "fresh"
        if stage.name == "data":
            prepare_all(data_root or "data", mirror)
            state = "ran"  # seconds when the caches exist: not a measure of the machine
        elif stage.name == "reverse":
            run_dir = runs_dir / stage.run.format(preset=preset)
            if (run_dir / "summary.json").is_file():
                state = "skipped"
            else:
                code = cli(["reverse", *REVERSE_ARGS.get(preset, []), "--seconds", "300", "--run-dir", str(run_dir)])
                if not (run_dir / "summary.json").is_file():
                    raise TrainingError("stage reverse failed (the error is above); run the same command again")
                if code != 0:
                    print("the reversal did not reach its target accuracy; the report says so")
        elif stage.name == "tests":
            run_tests(runs_dir / "tests", pytest_args)
        elif stage.name == "report":
            written = write_report(runs_dir, preset, runs_dir / "REPORT.md", tests_ran=pytest_args is not None)
            print(f"report written to {written}")
        else:
            state = run_training_stage(stage, preset, runs_dir, data_args)
        seconds = time.time() - start
        progress.end(i, seconds, state != "skipped", fresh=state == "fresh")
        if state != "skipped":
            record[stage.name] = {"seconds": round(seconds, 1), "how": state, "finished": time.strftime("%F %T")}
            atomic_write_json(log_path, record)
    print(f"\nall stages done in {(time.time() - progress.start) / 60:.1f} min; read {runs_dir / 'REPORT.md'}")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    return run_demo(args.preset, args.data_root, args.data_mirror, args.runs, args.tests, tuple(args.skip or ()))


def report_command(args: argparse.Namespace) -> int:
    from mllm.report import write_report

    if args.pdf:
        from mllm.report.html import find_browser

        find_browser()  # before the test run: an error naming the install, not after minutes of tests
    if args.tests:
        run_tests(Path(args.runs) / "tests")
    path = write_report(Path(args.runs), args.preset, Path(args.out) if args.out else None,
                        tests_ran=True if args.tests else None)
    print(f"report written to {path}")
    if args.html or args.pdf:
        from mllm.report.html import print_pdf, write_html

        page = Path(args.html) if args.html else Path(args.pdf).with_suffix(".html")
        print(f"one-file HTML report written to {write_html(path, page)}")
        if args.pdf:
            print(f"PDF report written to {print_pdf(page, Path(args.pdf))}")
    return 0
