import hashlib
import hmac
import time

import pytest

from shared.settings import SignatureMethod
from shared.signatures import sign, signing_string, verify

PARAMS = {
    "msisdn": "447400123456",
    "to": "447700900100",
    "messageId": "abc",
    "text": "fish & chips = good",
    "timestamp": "1700000000",
    "nonce": "n1",
}


def test_signing_string_sorts_and_escapes_values():
    assert signing_string({**PARAMS, "sig": "x"}) == (
        "&messageId=abc&msisdn=447400123456&nonce=n1&text=fish _ chips _ good"
        "&timestamp=1700000000&to=447700900100"
    )


def test_md5hash_is_md5_of_string_plus_secret():
    expected = hashlib.md5((signing_string(PARAMS) + "s3cret").encode()).hexdigest()
    assert sign(PARAMS, "s3cret", SignatureMethod.MD5HASH) == expected


@pytest.mark.parametrize(
    ("method", "digest"),
    [
        (SignatureMethod.MD5, hashlib.md5),
        (SignatureMethod.SHA1, hashlib.sha1),
        (SignatureMethod.SHA256, hashlib.sha256),
        (SignatureMethod.SHA512, hashlib.sha512),
    ],
)
def test_hmac_methods_agree_with_the_sdk(method, digest):
    from vonage import Auth

    ours = sign(PARAMS, "s3cret", method)
    assert ours == hmac.new(b"s3cret", signing_string(PARAMS).encode(), digest).hexdigest()
    sdk = Auth(api_key="k", signature_secret="s3cret", signature_method=method.value)
    assert sdk.check_signature({**PARAMS, "sig": ours.upper()})


@pytest.mark.parametrize("method", list(SignatureMethod))
def test_verify_accepts_fresh_and_rejects_tampered_or_stale(method):
    signed = {**PARAMS, "sig": sign(PARAMS, "s3cret", method)}
    assert verify(signed, "s3cret", method, now=1700000100) is None
    assert verify({**signed, "text": "other"}, "s3cret", method, now=1700000100) == "bad sig"
    assert verify(signed, "wrong", method, now=1700000100) == "bad sig"
    assert verify(signed, "s3cret", method, now=1700000000 + 301) == "stale timestamp"
    assert verify(PARAMS, "s3cret", method, now=1700000000) == "missing sig"
    assert verify({**signed, "timestamp": "x"}, "s3cret", method, now=1) is not None
    assert verify({**signed, "sig": "é" * 32}, "s3cret", method, now=1700000000) == "bad sig"


@pytest.mark.parametrize("method", list(SignatureMethod))
def test_agrees_with_the_independent_sandbox_signer(method):
    """Two implementations written apart must agree, or a shared bug could cancel out."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sandbox.signing import signature

    keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
    values = st.text(max_size=40)

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.dictionaries(keys, values, max_size=8), st.text(min_size=1, max_size=20))
    def agree(params, secret):
        assert sign(params, secret, method) == signature(params, secret, method.value)

    agree()


@pytest.mark.parametrize("method", list(SignatureMethod))
def test_a_key_holding_separators_does_not_verify(method):
    now = int(time.time())
    genuine = {"msisdn": "447400123456", "nonce": "n", "text": "hi", "timestamp": str(now)}
    sig = sign(genuine, "s3cret", method)
    # the same signing string from other parameters: `nonce` absorbs `text`
    forged = {"msisdn": "447400123456", "nonce=n&text": "hi", "timestamp": str(now), "sig": sig}
    assert verify(forged, "s3cret", method, now) == "bad parameter name"
    with pytest.raises(ValueError, match="parameter names"):
        signing_string(forged)


@pytest.mark.parametrize(("names", "safe"), [
    (["msisdn", "api-key", "message_timestamp", "X9"], True),
    ([], True),
    ([""], False),
    (["msisdn", ""], False),
    (["a&b"], False), (["a=b"], False), (["a b"], False), (["é"], False), (["a\nb"], False),
    (["a", "b\x00"], False), (["٤"], False),
])
def test_safe_names_are_non_empty_letters_digits_underscore_dash(names, safe):
    from shared.signatures import safe_parameter_names

    assert safe_parameter_names(dict.fromkeys(names, "v")) is safe
