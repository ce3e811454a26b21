import json

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


def test_health_ready_models_with_a_broken_bundle(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    app = create_app(Settings(models_dir=tmp_path, load_defaults=False))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok", "models": []}
        ready = client.get("/readyz").json()
        assert ready["ready"] is True and "broken" in ready["failed"]
        assert "truncated or corrupt" in ready["failed"]["broken"]
        assert client.get("/v1/models").json() == {"object": "list", "data": []}
        assert "sparsewave_requests_total" in client.get("/metrics").text


def test_api_keys_guard_the_api_but_not_health(tmp_path):
    app = create_app(Settings(models_dir=tmp_path, load_defaults=False, api_keys=("k1",)))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        denied = client.get("/v1/models")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200


def test_unknown_route_is_json_404(tmp_path):
    with TestClient(create_app(Settings(models_dir=tmp_path, load_defaults=False))) as client:
        resp = client.get("/v1/nothing")
        assert resp.status_code == 404 and json.loads(resp.text)["error"]["code"] == "http_404"
