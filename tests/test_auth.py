"""The one bearer-token check of the gRPC API, the search page and the bucket webhook (rvs.core.auth)."""

from __future__ import annotations

from rvs.core.auth import Credentials, Token


def test_only_bearer_and_the_very_token_pass() -> None:
    token = Token("s3cret")
    assert token.check("Bearer s3cret") is Credentials.VALID
    assert token.check(None) is Credentials.MISSING
    for malformed in ("s3cret", "bearer s3cret", "Basic s3cret", "Bearer", "", b"Bearer s3cret"):
        assert token.check(malformed) is Credentials.MALFORMED, malformed
    for invalid in ("Bearer wrong", "Bearer s3cret ", "Bearer  s3cret", "Bearer ", "Bearer s3cr\xe9t"):
        assert token.check(invalid) is Credentials.INVALID, invalid


def test_a_token_is_compared_as_bytes_and_a_lone_surrogate_is_no_match() -> None:
    token = Token("caf\xe9")
    assert token.matches("caf\xe9") and token.matches("caf\xe9".encode())
    assert not token.matches("\ud800") and not token.matches(b"caf\xe9")  # latin-1 is not the UTF-8 of it
