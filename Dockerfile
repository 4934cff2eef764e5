# avatarbot in a container. `docker compose up -d` builds and runs it with compose.yaml; see docs/operating.md.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user; /data (the database, training jobs and custom styles) is its only writable place
# besides its home (Keras and Matplotlib keep their settings there).
RUN useradd --create-home --uid 10001 --user-group avatarbot \
    && mkdir /data && chown avatarbot:avatarbot /data

WORKDIR /app
# The dependencies first, read from pyproject.toml alone: a change to the code does not reinstall TensorFlow.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# Then the project, installed as README.md says (editable: the shipped weights/ stay next to the code).
COPY . .
RUN pip install --no-deps -e . && python -m compileall -q bot gan training

ENV DATABASE_PATH=/data/avatarbot.db \
    STYLES_DIR=/data/styles \
    WEIGHTS_DIR=/app/weights
VOLUME /data
WORKDIR /data
USER avatarbot

# `avatarbot run` stops in order on SIGINT, SIGTERM or SIGHUP (bot/runner.py, STOP_SIGNALS): no new training
# workers, replies in flight finished, workers asked to save a checkpoint, then the connections closed.
# Give it the time to do so (compose.yaml: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["avatarbot", "run"]
