# One image for web, worker, beat and the sandbox; the command picks the process.
# The base is pinned to an exact release (bump it deliberately; pin a digest too where builds
# must be reproducible). Only runtime dependencies go in: requirements-runtime.lock is compiled
# from pyproject.toml without the `dev` extra (no pytest, mypy, schemathesis).
FROM python:3.11.14-slim-bookworm
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir -r requirements-runtime.lock
# .dockerignore keeps .git, .venv, .devstack, .sandbox (the sandbox's CA key), caches and tests out.
COPY . .
# A user of its own; the sandbox's state directory is its own too (a fresh named volume takes
# the owner of the directory it is mounted on), so that no process needs root.
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin \
       smsproxy \
    && mkdir -p /sandbox-state && chown smsproxy:smsproxy /sandbox-state
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "web.wsgi:app", "--config", "gunicorn.conf.py"]
