"""gunicorn settings for `web` (Procfile); every value can be overridden on the command line."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")  # noqa: S104 (a server's listen address)
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Threads keep a worker busy while one request waits on Redis; the handlers are short.
# GUNICORN_WORKER_CLASS=gevent serves them on greenlets instead (gunicorn monkey-patches the
# worker, so redis-py's sockets yield while they wait); docs/performance.md, benchmark 1.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Connections one worker holds at once (gunicorn's default, 1000, unless set). Workers accept
# greedily from one listening socket: with few long-lived keep-alive clients, one worker can
# end up with nearly all of them while the other idles (measured: 2.7 s of CPU against 0.2 s
# in 5 s of load). A cap near (expected clients / workers) spreads them; too low a cap leaves
# new connections waiting in the backlog for an idle one to time out (`keepalive`).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
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
