"""Entry point: `python main.py <command> --help`."""

from mllm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
