"""Entry point: `python main.py <command> --help`."""

from mllm.cli import main
from mllm.training.runtime import exit_process

if __name__ == "__main__":
    exit_process(main())
