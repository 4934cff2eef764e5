"""What the command-line tools share: TensorFlow's environment and a quiet start, CPU facts, one-line
errors.

TensorFlow's C++ runtime prints oneDNN, CUDA-probe and absl notices to file descriptor 2 while it is
imported and while it first looks for devices; ``TF_CPP_MIN_LOG_LEVEL`` does not catch all of them.
Command-line users should see only what concerns them, so the CLIs start TensorFlow through here.
"""

from __future__ import annotations

import os
import platform
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, MutableMapping


def tensorflow_environment(env: MutableMapping[str, str] | None = None,
                           quiet: bool = True) -> MutableMapping[str, str]:
    """Set defaults for the variables TensorFlow reads when it is imported, in ``env`` (default: this
    process's environment, so call it before TensorFlow is imported); a variable already set wins.

    - ``TF_CPP_MIN_LOG_LEVEL=2`` (when ``quiet``): no C++ info and warning notices.
    - ``TF_ENABLE_ONEDNN_OPTS=1`` on x86-64. TensorFlow turns its oneDNN kernels on by itself only on
      CPUs with AVX512-VNNI, AVX512-BF16, AVX-VNNI or AMX. On a 2-core AVX2 CPU without them (AMD EPYC,
      Zen 1) its own kernels drew 64 faces at 115 images/s against oneDNN's 277, and summed a batch of 1
      or 4 in another order than a batch of 16, so a single avatar was padded to 16 and took 145 ms
      against 8 ms (``python -m benchmarks.generate``, 2026-12-05). docs/operating.md ("The CPU") has
      the service's figures, and the one thing slower there: Real-CUGAN's Upscale.
    """
    env = os.environ if env is None else env
    if quiet:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if platform.machine().lower() in ("x86_64", "amd64"):
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    return env


def cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/avatarbot/<kind>`` (``~/.cache`` without it): what the project can measure or
    compile again, kept to skip the work next time."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avatarbot" / kind


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with fd 2 pointed at /dev/null (Python errors still
    surface: only the C++ runtime's notices are dropped)."""
    tensorflow_environment()
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


def _cpuinfo() -> str:
    """The text of /proc/cpuinfo, or "" where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name in ``cpuinfo`` (default: this machine's /proc/cpuinfo, or what Python
    knows where there is none)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return (platform.processor() or platform.machine() if cpuinfo is None else "") or "unknown CPU"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (default: this machine's)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bfloat16 matrix instructions (AMX or AVX512-BF16).

    Only there does bfloat16 mixed precision pay off on a CPU; elsewhere TensorFlow emulates it,
    several times slower than float32.
    """
    return bool(cpu_flags(cpuinfo) & {"amx_bf16", "avx512_bf16"})


def cpu_summary(cpuinfo: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """This CPU as benchmarks name it: the model and what its speed here depends on, the widest vector
    instructions, native bfloat16, and TensorFlow's oneDNN kernels as ``env`` (default: this process's
    environment) asks for them. The same command runs several times faster on one 2-core machine than
    on another, so a figure is read against this."""
    flags = cpu_flags(cpuinfo)
    vectors = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    bf16 = "native bfloat16" if cpu_has_native_bf16(cpuinfo) else "no native bfloat16"
    onednn = {"1": "oneDNN on", "0": "oneDNN off"}.get(
        (os.environ if env is None else env).get("TF_ENABLE_ONEDNN_OPTS", ""), "oneDNN as TensorFlow picks")
    return f"{cpu_model(cpuinfo)} ({vectors}, {bf16}; {onednn})"


def tensorflow_machine() -> str:
    """This machine as the model card names it: the CPU (``cpu_summary``) and core count, and the GPUs
    TensorFlow sees, if any."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"{cpu_summary()}, {os.cpu_count()} cores" + (f", {len(gpus)} GPU(s)" if gpus else "")


def bf16_is_fast() -> bool:
    """Whether bfloat16 mixed precision speeds training up here: a GPU, or a CPU with native bf16."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU")) or cpu_has_native_bf16()


class CLIError(Exception):
    """A user mistake on a command line: printed as one line, exit status 2."""


def run_command(args, prog: str, log_level: int) -> int:
    """Run a parsed CLI command (``args.func``) the way both console scripts do.

    Logging at ``log_level`` (DEBUG with ``-v``), TensorFlow's environment set
    (``tensorflow_environment``), TensorFlow started quietly unless the command
    says it needs none (``uses_tensorflow=False``) or ``-v`` asks for everything, and a
    ``CLIError`` printed as ``prog: error: ...`` with exit status 2.
    """
    import logging
    import sys

    logging.basicConfig(level=logging.DEBUG if args.verbose else log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tensorflow_environment(quiet=not args.verbose)
    if not args.verbose and getattr(args, "uses_tensorflow", True):
        start_tensorflow_quietly()
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while training, so both save a checkpoint and stop cleanly."""
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
