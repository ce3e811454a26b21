"""Fixtures: tiny real bundles (built once per session through the families'
export paths), the shipped defaults the content tests need, and one live
server with an API key for the whole session."""
from __future__ import annotations

import httpx
import pytest
from live_server import API_KEY, TEST_LIMITS, live_server
from tiny_service_models import link_default_bundles, write_tiny_bundles

from service.settings import Settings


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Only the tiny bundles: for the servers that tests start and stop themselves."""
    directory = tmp_path_factory.mktemp("tiny-bundles")
    write_tiny_bundles(directory)
    return directory


@pytest.fixture(scope="session")
def bundles_dir(tiny_dir, tmp_path_factory):
    """The tiny bundles and the shipped deepspeech2-default and onsets-frames-default."""
    directory = tmp_path_factory.mktemp("bundles")
    for bundle in tiny_dir.iterdir():
        if (bundle / "manifest.json").is_file():
            (directory / bundle.name).symlink_to(bundle, target_is_directory=True)
    link_default_bundles(directory)
    return directory


@pytest.fixture(scope="session")
def server(bundles_dir):
    settings = Settings(models_dir=bundles_dir, load_defaults=False, api_keys=(API_KEY,), batch_synthesis=True,
                        **TEST_LIMITS)
    with live_server(settings) as url:
        yield url


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client
