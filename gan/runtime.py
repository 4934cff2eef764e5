"""Start TensorFlow without its start-up chatter on the terminal.

TensorFlow's C++ runtime prints oneDNN, CUDA-probe and absl notices to file descriptor 2 while it is
imported and while it first looks for devices; ``TF_CPP_MIN_LOG_LEVEL`` does not catch all of them.
Command-line users should see only what concerns them, so the CLIs start TensorFlow through here.
"""

from __future__ import annotations

import os


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with fd 2 pointed at /dev/null (Python errors still
    surface: only the C++ runtime's notices are dropped)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.constant(0)  # the first op initialises the runtime (and its last notices)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


class CLIError(Exception):
    """A user mistake on a command line: printed as one line, exit status 2."""


def run_command(args, prog: str, log_level: int) -> int:
    """Run a parsed CLI command (``args.func``) the way both console scripts do.

    Logging at ``log_level`` (DEBUG with ``-v``), TensorFlow started quietly unless the command
    says it needs none (``uses_tensorflow=False``) or ``-v`` asks for everything, and a
    ``CLIError`` printed as ``prog: error: ...`` with exit status 2.
    """
    import logging
    import sys

    logging.basicConfig(level=logging.DEBUG if args.verbose else log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose and getattr(args, "uses_tensorflow", True):
        start_tensorflow_quietly()
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
