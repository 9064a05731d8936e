"""gunicorn settings for `web` (Procfile); every value can be overridden on the command line."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")  # noqa: S104 (a server's listen address)
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gevent serves requests on greenlets: gunicorn monkey-patches the worker, so redis-py's sockets
# yield while they wait, and a webhook costs 25-35 % less CPU than on threads, which wait for the
# GIL after every round trip (docs/performance.md, benchmark 1). A request that computes for long
# holds up its worker's other greenlets until it next waits. GUNICORN_WORKER_CLASS=gthread
# serves them on GUNICORN_THREADS threads instead.
DEFAULT_WORKER_CLASS = "gevent"
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", DEFAULT_WORKER_CLASS)
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Vonage gives up on a webhook after 15 s; answer (or fail) well before that.
timeout = 10
graceful_timeout = 10
keepalive = 5
# No access log by default: a GET webhook's query string carries phone numbers and text. Turned
# on (--access-logfile), its query strings are scrubbed by the logger class below.
accesslog = None
errorlog = "-"
# gunicorn's own lines in SMSPROXY_LOG_FORMAT, query strings' values replaced
logger_class = "web.gunicorn_logging.ProxyLogger"
# gunicorn 25.1+ opens a control socket (worker counts, reload, shutdown through `gunicornc`)
# at one path per user, $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl: every gunicorn
# of that user on the host binds the same path, taking it from the one before. Nothing here uses
# it, so it stays closed; an operator who wants it removes this line (`control_socket`: a path).
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """Move everything the worker loaded (the app, its modules) out of the collector's reach.

    A worker that exits runs a full garbage collection at interpreter shutdown, over every
    object it has; each object it touches is a copy-on-write page fault. Measured on 2 loaded
    cores: a worker's exit after SIGTERM took 1.6-4.0 s of that collection (py-spy:
    gc_collect_main), 0.1 s with the loaded objects frozen. They live as long as the worker.
    """
    import gc

    gc.freeze()
