"""The floor of a durable acknowledgement: a bare Flask handler that answers 204 only after one
Redis round trip (an EVALSHA that LPUSHes the request's body onto a list), nothing else.

No receiver that acknowledges only once its job is in Redis can do less per webhook; the
benchmark runs it against a Redis with the receiver's persistence settings (append-only,
`appendfsync everysec`).
"""

import os

import redis
from flask import Flask, request

app = Flask(__name__)
_redis = redis.Redis.from_url(os.environ["REDIS_URL"])
_push = _redis.register_script("return redis.call('LPUSH', KEYS[1], ARGV[1])")


@app.route("/webhooks/inbound-sms", methods=["GET", "POST"])
def inbound_sms() -> tuple[str, int]:
    if request.method == "POST":
        _push(keys=["bench:floor"], args=[request.get_data()])
    return "", 204
