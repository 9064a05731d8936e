"""The Flask app (Vonage APIs plus the control API) and the HTTPS server that runs it."""

import json
import logging
import os
import signal
import threading
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
from sandbox.handsets import create_handsets_app
from sandbox.state import State
from sandbox.tls import load_or_create_ca, write_server_pem

log = logging.getLogger(__name__)

# idle keep-alive connections the API listener keeps open (cheroot: 10 unless told)
KEEP_ALIVE_CONNECTIONS = 256


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
    carrier = Carrier(config, state, deliverer)
    app = create_app(config, state, carrier)
    ca, ca_path = load_or_create_ca(config.state_dir)
    # cheroot, not werkzeug's development server: Vonage keeps HTTPS connections alive, and
    # werkzeug closes every one, which would make each API call pay a TLS handshake.
    server = cheroot.wsgi.Server((config.host, config.port), app, numthreads=64,
                                 request_queue_size=256, timeout=30)
    # cheroot keeps at most 10 idle keep-alive connections by default and answers
    # `Connection: close` beyond that: a worker's 32 pooled SDK clients then paid a TCP connect
    # and a TLS handshake (on both ends, on the benchmark's cores) for most sends, where Vonage
    # keeps them alive. As many as the listen queue; idle ones still close after `timeout`.
    server.keep_alive_conn_limit = KEEP_ALIVE_CONNECTIONS
    pem = write_server_pem(ca, config.state_dir)
    server.ssl_adapter = BuiltinSSLAdapter(str(pem), str(pem))
    server.prepare()  # binds, so that port 0 has become a real port
    port = int(server.bind_addr[1])
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"https://{host}:{port}"
    ready: dict[str, object] = {"port": port, "ca": str(ca_path), "url": url}
    handsets = _handsets_server(config, state, carrier)
    if handsets is not None:
        # Its own thread: cheroot's serve() blocks, and the page must not hold up the APIs.
        threading.Thread(target=handsets.serve, name="handsets", daemon=True).start()
        ready["handsets_url"] = _url("http", config.handsets_host, int(handsets.bind_addr[1]))
        print(f"sandbox handsets page on {ready['handsets_url']}/handsets", flush=True)
    if config.ready_file is not None:
        _write_ready_file(config.ready_file, ready)
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
        if handsets is not None:
            handsets.stop()
        deliverer.close()
        if config.ready_file is not None:
            config.ready_file.unlink(missing_ok=True)
        log.info("sandbox stopped")


def _handsets_server(
    config: SandboxConfig, state: State, carrier: Carrier
) -> cheroot.wsgi.Server | None:
    """The handsets page's listener, bound, or None when no `--handsets-port` asks for one.

    Plain HTTP: a browser treats loopback as a secure origin, and a developer's browser does
    not trust the sandbox's CA. SandboxConfig has refused a non-loopback host already unless
    `--handsets-allow-remote`.
    """
    if config.handsets_port is None:
        return None
    server = cheroot.wsgi.Server(
        (config.handsets_host, config.handsets_port),
        create_handsets_app(config, state, carrier),
        numthreads=8,
        timeout=30,
    )
    server.prepare()
    return server


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # serve() returns through KeyboardInterrupt, which the caller turns into a clean stop.
    raise KeyboardInterrupt


def _write_ready_file(path: Path, content: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content))
    os.replace(temporary, path)
