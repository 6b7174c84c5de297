"""The service's addresses: a URL built from a host must be a URL for every kind of host."""

from __future__ import annotations

import pytest

from service.settings import ServiceSettings, http_url


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8765"),
        ("localhost", "http://localhost:8765"),
        ("::1", "http://[::1]:8765"),
        ("[::1]", "http://[::1]:8765"),
        ("fe80::1%lo", "http://[fe80::1%25lo]:8765"),
    ],
)
def test_urls_put_ipv6_literals_in_brackets(host, url):
    assert http_url(host, 8765) == url


@pytest.mark.parametrize(
    ("host", "url", "local"),
    [
        ("::1", "http://[::1]:9000", "http://[::1]:9000"),
        ("::", "http://[::]:9000", "http://[::1]:9000"),
        ("0.0.0.0", "http://0.0.0.0:9000", "http://127.0.0.1:9000"),
    ],
)
def test_the_service_knows_its_own_url_and_how_to_reach_it_locally(host, url, local):
    s = ServiceSettings(host=host, port=9000)
    assert (s.url, s.local_url) == (url, local)
