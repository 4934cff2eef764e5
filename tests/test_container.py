"""The container files, checked without Docker: the Dockerfile's user, volume, signal and command, what
.dockerignore keeps out, and compose.yaml's volume, restart policy and health check, whose command is run
here against a local /healthz."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.config import Settings
from bot.runner import STOP_SIGNALS
from tests.conftest import REPO
from training.jobs import JobSettings

# Variables that Python and pip read themselves, not the bot.
RUNTIME_VARIABLES = {"PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"}


def parse_yaml(text: str):
    """The block-style subset of YAML that compose.yaml is written in: nested mappings, lists of scalars,
    quoted strings and JSON-style flow lists, full-line comments."""
    lines = [(len(line) - len(line.lstrip(" ")), line.strip()) for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]

    def scalar(value: str):
        return json.loads(value) if value.startswith(("[", '"')) else value

    def block(i: int, indent: int):
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(scalar(lines[i][1][2:].strip()))
                i += 1
            return items, i
        mapping = {}
        while i < len(lines) and lines[i][0] == indent:
            key, sep, rest = lines[i][1].partition(":")
            assert sep, f"not a mapping entry: {lines[i][1]!r}"
            i += 1
            if rest.strip():
                mapping[key] = scalar(rest.strip())
            elif i < len(lines) and lines[i][0] > indent:
                mapping[key], i = block(i, lines[i][0])
            else:
                mapping[key] = None
        return mapping, i

    value, end = block(0, 0)
    assert end == len(lines), f"compose.yaml: not understood from {lines[end][1]!r}"
    return value


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined: (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(args))
    return env


@pytest.fixture(scope="module")
def service() -> dict:
    compose = parse_yaml((REPO / "compose.yaml").read_text())
    return compose["services"]["avatarbot"]


def seconds(duration: str) -> float:
    """A compose duration such as ``90s``, ``2m`` or ``1m30s``."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_the_image_runs_the_bot_unprivileged_with_its_data_in_a_volume():
    instructions = dockerfile()
    values = lambda name: [args for instruction, args in instructions if instruction == name]
    assert values("FROM")[0].startswith("python:3.11-slim")
    users = values("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the bot must not run as root"
    assert "/data" in " ".join(values("VOLUME"))
    env = dockerfile_env()
    assert env["DATABASE_PATH"].startswith("/data/") and env["STYLES_DIR"].startswith("/data/")
    assert json.loads(values("CMD")[-1]) == ["avatarbot", "run"]
    stop = values("STOPSIGNAL")
    assert stop and stop[-1] in {s.name for s in STOP_SIGNALS}, "the stop signal must stop the bot in order"
    assert any("pip install" in run and "-e ." in run for run in values("RUN")), "installed as README.md says"


def test_dockerignore_keeps_secrets_and_data_out_and_the_weights_in():
    patterns = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", ".env", "data", "runs", ".git"} <= patterns
    assert not any(p.startswith("weights") for p in patterns), "the shipped weights belong in the image"


def test_compose_keeps_data_restarts_and_gives_the_bot_time_to_stop(service):
    assert service["env_file"] == ".env"
    assert service["restart"] == "unless-stopped"
    assert any(volume.endswith(":/data") for volume in service["volumes"])
    # Replies in flight and the training workers' checkpoints finish before Docker kills anything.
    assert seconds(service["stop_grace_period"]) > JobSettings().stop_timeout_s + Settings().shutdown_timeout_s


def test_every_variable_the_container_sets_is_a_setting(service):
    names = set(dockerfile_env()) | set(service["environment"])
    fields = {name.upper() for name in Settings.model_fields}
    assert names - RUNTIME_VARIABLES <= fields, f"not settings: {sorted(names - RUNTIME_VARIABLES - fields)}"
    # Values the bot accepts (the port, the host, the paths).
    Settings(_env_file=None, **{k.lower(): v for k, v in {**dockerfile_env(), **service["environment"]}.items()
                                if k not in RUNTIME_VARIABLES})


class Health(BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Health.paths.append(self.path)
        self.send_response(Health.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def test_the_health_check_calls_healthz_on_the_metrics_port(service):
    environment = service["environment"]
    assert environment["METRICS_HOST"] == "0.0.0.0"
    port = int(environment["METRICS_PORT"])
    assert any(str(p).endswith(f":{port}") for p in service["ports"]), "the metrics port is published"
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1] == "python"
    assert seconds(check["timeout"]) > 10, "longer than /healthz's own render-thread wait (10 s)"

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Run the check as the container would, with the metrics port moved to where the stand-in listens.
    env = {**os.environ, **environment, "METRICS_PORT": str(server.server_address[1])}
    command = [sys.executable, *check["test"][2:]]
    try:
        Health.status = 200
        assert subprocess.run(command, env=env, capture_output=True, timeout=60).returncode == 0
        Health.status = 503
        assert subprocess.run(command, env=env, capture_output=True, timeout=60).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
    assert Health.paths == ["/healthz", "/healthz"]
