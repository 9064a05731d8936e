"""The Flask app (Vonage APIs plus the control API) and the HTTPS server that runs it."""

import json
import logging
import os
import signal
from pathlib import Path
from types import FrameType

import cheroot.wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from sandbox.api_insight import insight_blueprint
from sandbox.api_numbers import numbers_blueprint
from sandbox.api_sms import sms_blueprint
from sandbox.carrier import Carrier
from sandbox.config import SandboxConfig
from sandbox.control import control_blueprint
from sandbox.delivery import Deliverer
from sandbox.state import State
from sandbox.tls import load_or_create_ca, write_server_pem

log = logging.getLogger(__name__)


def create_app(config: SandboxConfig, state: State, carrier: Carrier) -> Flask:
    """The WSGI app; `state` and `carrier` are passed in so the caller owns their lifetime."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Vonage's field order
    app.register_blueprint(sms_blueprint(config, state, carrier))
    app.register_blueprint(insight_blueprint(config, state))
    app.register_blueprint(numbers_blueprint(config, state))
    app.register_blueprint(control_blueprint(state, carrier))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        # Unknown paths and wrong methods answer JSON, never an HTML page.
        response = jsonify(
            {"type": "about:blank", "title": error.name, "detail": error.description}
        )
        response.status_code = error.code or 500
        return response

    return app


def serve(config: SandboxConfig) -> None:
    """Run until SIGINT or SIGTERM."""
    state = State(config)
    deliverer = Deliverer(
        state,
        retry_base_seconds=config.retry_base_seconds,
        retry_max_attempts=config.retry_max_attempts,
    )
    app = create_app(config, state, Carrier(config, state, deliverer))
    ca, ca_path = load_or_create_ca(config.state_dir)
    # cheroot, not werkzeug's development server: Vonage keeps HTTPS connections alive, and
    # werkzeug closes every one, which would make each API call pay a TLS handshake.
    server = cheroot.wsgi.Server((config.host, config.port), app, numthreads=64,
                                 request_queue_size=256, timeout=30)
    pem = write_server_pem(ca, config.state_dir)
    server.ssl_adapter = BuiltinSSLAdapter(str(pem), str(pem))
    server.prepare()  # binds, so that port 0 has become a real port
    port = int(server.bind_addr[1])
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"https://{host}:{port}"
    if config.ready_file is not None:
        _write_ready_file(config.ready_file, {"port": port, "ca": str(ca_path), "url": url})
    # Both set explicitly: a shell starting us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    print(f"sandbox ready on {url} (CA: {ca_path})", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        deliverer.close()
        if config.ready_file is not None:
            config.ready_file.unlink(missing_ok=True)
        log.info("sandbox stopped")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # serve() returns through KeyboardInterrupt, which the caller turns into a clean stop.
    raise KeyboardInterrupt


def _write_ready_file(path: Path, content: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)
