"""Command-line interface: one subcommand per job; `python main.py <command> --help` for each."""

from __future__ import annotations

import argparse
import sys


def _reverse(args: argparse.Namespace) -> int:
    from mllm.transformer.toy import train_reversal

    accuracy = train_reversal(seconds=args.seconds, target=args.target)
    return 0 if accuracy >= args.target else 1


def _demo(args: argparse.Namespace) -> int:
    print("== Transformer core: learn to reverse digit sequences ==")
    return _reverse(argparse.Namespace(seconds=120.0, target=0.99))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="MLLM from scratch: build and train every part.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = sub.add_parser("reverse", help="train the encoder-decoder Transformer to reverse digit strings")
    p.add_argument("--seconds", type=float, default=120.0, help="time budget (default 120)")
    p.add_argument("--target", type=float, default=0.99, help="held-out token accuracy to stop at")
    p.set_defaults(func=_reverse)

    p = sub.add_parser("demo", help="run every stage that has landed and write the report")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)
