"""Command-line interface: one subcommand per job; `python main.py <command> --help` for each."""

from __future__ import annotations

import argparse
import importlib
import sys

from mllm.data import DataError
from mllm.training.config import ConfigError
from mllm.training.launch import add_data_args, add_train_args
from mllm.training.loop import TrainingError


def _lazy(module: str, name: str):
    """Import a command's module only when it runs, so `--help` and small commands start fast."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), name)(args)

    return run


def _train_parser(sub, name: str, help: str, config: str, module: str) -> None:
    p = sub.add_parser(name, help=help)
    add_train_args(p, config)
    p.set_defaults(func=_lazy(module, name.replace("-", "_")))


def _checkpoint_parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.add_argument("checkpoint", help="a run folder (its best.pt) or a .pt file")
    if name != "generate":
        p.add_argument("--image", nargs="*", help="image files (any size or mode)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="MLLM from scratch: build and train every part.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = sub.add_parser("data", help="fetch (or read from a mirror) and prepare all three data sets")
    add_data_args(p)
    p.add_argument("--image-size", type=int, default=64, help="Flickr8k image side in the cache (default 64)")
    p.set_defaults(func=_lazy("mllm.data.prepare", "data_command"))

    _train_parser(sub, "train-vit", "train the Vision Transformer on CIFAR-10", "vit", "mllm.vision.cli")
    p = _checkpoint_parser(sub, "predict", "classify CIFAR-10 test images or image files with a trained ViT")
    p.add_argument("--index", nargs="*", type=int, help="CIFAR-10 test-set indices")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="cpu")
    add_data_args(p)
    p.set_defaults(func=_lazy("mllm.vision.cli", "predict"))

    _train_parser(sub, "train-llm", "train the char-level GPT on Tiny Shakespeare", "gpt", "mllm.language.cli")
    p = _checkpoint_parser(sub, "generate", "sample text from a trained GPT checkpoint")
    p.add_argument("--prompt", default="", help="text to continue (default: start from a newline)")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--length", type=int, default=500, help="new characters per sample")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_lazy("mllm.language.cli", "generate"))

    _train_parser(sub, "train-align", "align the ViT with Flickr8k captions (contrastive), for the captioner", "align",
                  "mllm.multimodal.cli")
    _train_parser(sub, "train-mllm", "train the captioner (ViT + connector + GPT) on Flickr8k", "mllm",
                  "mllm.multimodal.cli")
    _train_parser(sub, "train-rl", "fine-tune a trained captioner with SCST on CIDEr-D", "rl", "mllm.rl.cli")
    p = _checkpoint_parser(sub, "caption", "caption image files or Flickr8k images with a trained captioner "
                                           "(supervised or SCST)")
    p.add_argument("--flickr", nargs="*", help="Flickr8k image names, e.g. 3385593926_d3e9c21170.jpg")
    p.add_argument("--strategy", default="beam", choices=["greedy", "beam"], help="decoding (default beam)")
    p.add_argument("--beam-size", type=int, default=None, help="default: the run's eval.beam_size")
    p.add_argument("--length-penalty", type=float, default=None, help="default: the run's eval.length_penalty")
    p.add_argument("--grounding", type=float, default=None,
                   help="grounded decoding's strength (needs the grounding head); default: the run's eval.grounding")
    p.add_argument("--no-repeat", type=int, default=None,
                   help="n > 0: no caption repeats one of its own n-grams (0: off); default: the run's eval.no_repeat")
    p.add_argument("--max-len", type=int, default=None,
                   help="tokens per caption (char captioners: characters); default: the run's eval.max_len")
    p.add_argument("--attention", metavar="OUT.png", default=None,
                   help="also draw where each word looked in the image (per layer and combined) over the photo; "
                        "several images: OUT-1.png, OUT-2.png, ...")
    p.add_argument("--device", default="cpu")
    add_data_args(p)
    p.set_defaults(func=_lazy("mllm.multimodal.cli", "caption"))

    from mllm.serve.cli import add_serve_args

    p = sub.add_parser("serve", help="local web demo: caption your image (supervised vs SCST) and generate text")
    add_serve_args(p)
    p.set_defaults(func=_lazy("mllm.serve.cli", "serve"))

    p = sub.add_parser("reverse", help="train the encoder-decoder Transformer to reverse digit strings")
    p.add_argument("--steps", type=int, default=1500, help="optimizer-step budget (default 1500)")
    p.add_argument("--seconds", type=float, default=None, help="optional wall-clock cap as well (default none)")
    p.add_argument("--target", type=float, default=0.99, help="held-out token accuracy to stop at")
    p.add_argument("--run-dir", default=None, help="keep the log, a summary and examples here (default: print only)")
    p.set_defaults(func=_lazy("mllm.transformer.toy", "reverse_command"))

    p = sub.add_parser("demo", help="run every stage in order (data, Transformer toy, ViT, its alignment with "
                                    "captions, GPT, captioner, blind baseline, SCST, tests) and write "
                                    "runs/REPORT.md; finished stages are skipped")
    p.add_argument("--preset", default="cpu", help="tiny (a smoke run, about 2 minutes), cpu (about 3 hours on "
                                                   "2 CPU cores), gpu (the full recipe)")
    p.add_argument("--runs", default="runs", help="folder for the run folders and the report (default runs/)")
    p.add_argument("--tests", action=argparse.BooleanOptionalAction, default=None,
                   help="run the test suite for the report, its result per file and a screenshot of it (default: "
                        "yes; --preset tiny runs the Transformer core's test files only unless --tests)")
    p.add_argument("--skip", nargs="*", choices=["reverse", "vit", "align", "gpt", "captioner", "blind", "scst"],
                   help="stages to leave out (the report says they did not run)")
    add_data_args(p)
    p.set_defaults(func=_lazy("mllm.pipeline", "demo_command"))

    p = sub.add_parser("report", help="write the report from the run folders that exist (no training)")
    p.add_argument("--preset", default="cpu", help="whose runs: runs/<stage>-<preset> (default cpu)")
    p.add_argument("--runs", default="runs", help="folder holding the run folders (default runs/)")
    p.add_argument("--out", default=None, help="report path (default <runs>/REPORT.md); figures go beside it")
    p.add_argument("--tests", action="store_true",
                   help="run the test suite first (kept in <runs>/tests/: results per file, console, screenshot)")
    p.add_argument("--html", default=None, metavar="OUT.html",
                   help="also write the report as one self-contained HTML file (figures inline, no web access)")
    p.add_argument("--pdf", default=None, metavar="OUT.pdf",
                   help="also print it to PDF with headless Chromium (`make browser`); the HTML goes beside it "
                        "unless --html names it")
    p.set_defaults(func=_lazy("mllm.pipeline", "report_command"))

    from mllm.exercises.cli import add_exercise_parser

    add_exercise_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (DataError, ConfigError, TrainingError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
