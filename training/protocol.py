"""What the job manager and its worker process (``python -m training.worker JOB_DIR``) say to each other.

The manager writes the job's ``JobSpec`` to ``JOB_DIR/spec.json``. The worker prints one JSON object
per line on stdout, nothing else (``event_line``; the manager reads them with ``parse_event``)::

    {"event": "start", "step": 0, "total": 1500}
    {"event": "progress", "step": 120, "total": 1500, "eta": 310.5, "metrics": {...}}
    {"event": "sample", "step": 250, "path": ".../run/samples/step-000000250.png"}
    {"event": "exporting"}
    {"event": "measuring"}
    {"event": "exported", "path": ".../export/<name>"}
    {"event": "error", "message": "one line", "reason": {"template": "...", "params": {...}}}

and exits with ``EXIT_DONE`` once the style is exported, ``EXIT_INTERRUPTED`` when a signal (or its
parent's death) stopped it after saving a checkpoint, ``EXIT_ERROR`` on an error.

An error's ``message`` is its English; ``reason`` the same as a ``training.errors.Message``, which
the chat translates. ``measuring`` comes while the quality gate (``training.gate``) compares the exported style with the
default one, when ``JobSpec.gate`` is set; its figures are in the exported ``style.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

EXIT_DONE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 3
START, PROGRESS, SAMPLE, EXPORTING, EXPORTED, ERROR = "start", "progress", "sample", "exporting", "exported", "error"
MEASURING = "measuring"
SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class JobSpec:
    """One job's training run: where its files are, its budget, and the fine-tuning settings.

    The fields with defaults were added over time: a spec written before them reads with the
    default, so a job queued by an older version trains as it was queued.
    """

    name: str
    data_dir: str
    run_dir: str
    export_dir: str
    init_from: str  # the style folder fine-tuned from
    steps: int
    batch_size: int
    checkpoint_every: int
    sample_every: int  # steps between sample grids
    progress_interval_s: float = 5.0  # at most one progress line this often
    mixed_precision: bool | None = None  # None: bfloat16 where it is fast
    model_overrides: dict[str, Any] = field(default_factory=dict)
    flat_colour_overrides: dict[str, Any] = field(default_factory=dict)  # added for pictures in flat colours
    lr_warmup_steps: int = 0
    lr_decay_start: int | None = None
    seed: int = 0
    gate: dict[str, Any] | None = None  # a training.gate.GateSpec as JSON; None: no quality gate

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        """A spec from its JSON object (unknown keys ignored; ``TypeError`` if a required one is missing)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, job_dir: str | Path) -> "JobSpec":
        """The spec in ``job_dir``."""
        return cls.from_dict(json.loads((Path(job_dir) / SPEC_FILE).read_text()))

    def write(self, job_dir: str | Path) -> Path:
        """Write the spec into ``job_dir``; returns its path."""
        path = Path(job_dir) / SPEC_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def event_line(event: str, **values: Any) -> str:
    """One event as the worker prints it (a JSON object and a newline)."""
    return json.dumps({"event": event, **values}) + "\n"


def parse_event(raw: bytes | str) -> dict[str, Any] | None:
    """An event line as a dict with an ``"event"`` key, or None if the line is not one."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) and isinstance(message.get("event"), str) else None
