"""Who may use the API: the start-up rule and the bearer-token check."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from engine.api.server import _authorised, check_exposure
from engine.errors import ConfigError
from engine.settings import load_settings


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_without_token_is_allowed(host: str) -> None:
    check_exposure(load_settings({"WEBHOST": host}))


def test_network_address_without_token_refuses_in_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        check_exposure(load_settings({"WEBHOST": "0.0.0.0"}))
    assert "\n" not in str(err.value) and "API_TOKEN" in str(err.value)
    check_exposure(load_settings({"WEBHOST": "0.0.0.0", "API_TOKEN": "s3cret"}))
    check_exposure(load_settings({"WEBHOST": "0.0.0.0", "WEBPORT": "0"}))  # API off


@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer s3cret", True), ("bearer s3cret", True), ("Bearer s3cre", False),
    ("Bearer s3cret2", False), ("Basic s3cret", False), ("", False), ("s3cret", False),
])
def test_bearer_token_check(header: str, ok: bool) -> None:
    headers = {"Authorization": header} if header else {}
    request = make_mocked_request("GET", "/api/v1/calls", headers=headers)
    assert _authorised(request, b"s3cret") is ok
    assert _authorised(request, None) is True  # no token configured (loopback only)
