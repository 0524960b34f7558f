"""Nothing that answers searches or deletes media listens beyond loopback without a token."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rvs.query.config import QuerySettings


@pytest.mark.parametrize("where", [{"host": "0.0.0.0"}, {"host": "::"}, {"host": "10.1.2.3"}, {"web_host": "0.0.0.0"}])
def test_query_service_refuses_a_non_loopback_address_without_a_token(where: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="RVS_AUTH_TOKEN"):
        QuerySettings(**where)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", [{"host": "0.0.0.0"}, {"web_host": "::"}])
def test_a_token_or_the_explicit_opt_out_allows_it(where: dict[str, str]) -> None:
    QuerySettings(**where, auth_token="t" * 32)  # type: ignore[arg-type]
    QuerySettings(**where, allow_unauthenticated=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1"])
def test_loopback_needs_no_token(host: str) -> None:
    QuerySettings(host=host, web_host=host)


def test_a_page_that_is_off_binds_nothing() -> None:
    QuerySettings(web_host="0.0.0.0", web_port=0)
