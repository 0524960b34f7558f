"""The shared secrets rvs's front ends may require (RVS_AUTH_TOKEN for the gRPC API and the search
page, the bucket webhook's token), checked one way: `authorization: Bearer <token>`, compared in
constant time."""

from __future__ import annotations

import hmac
from enum import Enum

BEARER = "Bearer "


class Credentials(Enum):
    """What an `authorization` header (or gRPC metadata) value is worth."""

    VALID = "valid"
    MISSING = "missing"
    MALFORMED = "malformed"  # not `Bearer <token>`: a bare token is refused too
    INVALID = "invalid"


class Token:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def matches(self, given: str | bytes) -> bool:
        """In constant time, so the answer's timing tells nothing of the secret."""
        if isinstance(given, str):
            try:
                given = given.encode()
            except UnicodeEncodeError:  # a lone surrogate is no secret
                return False
        return hmac.compare_digest(given, self._secret)

    def check(self, authorization: object) -> Credentials:
        """`authorization` as received (None when absent; gRPC metadata may carry bytes)."""
        if authorization is None:
            return Credentials.MISSING
        if not isinstance(authorization, str) or not authorization.startswith(BEARER):
            return Credentials.MALFORMED
        return Credentials.VALID if self.matches(authorization.removeprefix(BEARER)) else Credentials.INVALID
