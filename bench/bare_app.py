"""The baseline for webhook ingest: a bare Flask handler answering 204, nothing else."""

from flask import Flask

app = Flask(__name__)


@app.route("/webhooks/inbound-sms", methods=["GET", "POST"])
def inbound_sms() -> tuple[str, int]:
    return "", 204
