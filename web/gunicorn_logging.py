"""gunicorn's own logger (`logger_class` in gunicorn.conf.py): our format, no query strings.

gunicorn writes its error log (start, workers, timeouts, "Error handling request <uri>") and,
when an operator turns it on, its access log through handlers of its own, not through the root
logger: this class gives those handlers the format of SMSPROXY_LOG_FORMAT. A GET webhook carries
msisdn, to and text in its query string, so every value of a query string is replaced in the
access log's atoms (the request line, `%(q)s`, the environ and header atoms) and in the error
log's messages.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger

from shared.logging import QueryScrubFilter, formatter
from shared.redaction import scrub_query_strings
from shared.settings import Settings


class ProxyLogger(Logger):  # type: ignore[misc]
    """gunicorn's Logger with the proxy's formatter and query strings scrubbed."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # the master reads the setting too: an invalid value stops gunicorn before any worker
        log_format = Settings.from_env(os.environ).log_format
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter(log_format))
                if not any(isinstance(f, QueryScrubFilter) for f in handler.filters):
                    handler.addFilter(QueryScrubFilter())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if isinstance(value, str) and "?" in value:
                atoms[name] = scrub_query_strings(value)
        query = environ.get("QUERY_STRING")
        if query:
            atoms["q"] = scrub_query_strings(f"?{query}")[1:]
            atoms["{query_string}e"] = atoms["q"]
        return atoms
