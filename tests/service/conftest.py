"""Fixtures: tiny bundles and a live server with an API key."""
from __future__ import annotations

import httpx
import pytest
from live_server import API_KEY, TEST_LIMITS, live_server
from tiny_service_models import write_bundles, write_real_bundles

from service.settings import Settings


@pytest.fixture(scope="session")
def bundles_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bundles")
    write_bundles(directory)
    write_real_bundles(directory)
    return directory


@pytest.fixture(scope="module")
def server(bundles_dir):
    settings = Settings(models_dir=bundles_dir, load_defaults=False, api_keys=(API_KEY,), **TEST_LIMITS)
    with live_server(settings) as url:
        yield url


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client
