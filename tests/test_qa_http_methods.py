"""Methods and query strings: HEAD answers like GET, a query parameter is known and given once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from glimpse.server import ServerConfig, create_app
from qa_http_fixtures import AUTH, client  # noqa: F401  (a fixture)


@pytest.mark.parametrize("url", ["/", "/api/health", "/api/stats", "/api/errors", "/api/items/1",
                                 "/api/items/1/thumbnail", "/api/items/1/image", "/static/app.js", "/openapi.json"])
def test_head_answers_like_get_without_a_body(client, url):
    get, head = client.get(url), client.head(url)
    assert head.status_code == get.status_code == 200, head.text
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    if "content-length" in get.headers:
        assert head.headers["content-length"] == get.headers["content-length"]


def test_head_of_an_unknown_item_is_404_without_a_body(client):
    answer = client.head("/api/items/99")
    assert answer.status_code == 404 and answer.content == b""


@pytest.mark.parametrize("url", ["/api/search", "/api/search/image"])
def test_head_of_a_post_route_is_405_naming_post(client, url):
    answer = client.head(url)
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


def test_a_wrong_method_says_which_to_send(client):
    answer = client.get("/api/search?text=dog")  # was {"error": "Method Not Allowed"}
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert answer.json() == {"error": "GET is not taken at /api/search: use POST", "status": 405}


@pytest.mark.parametrize("url", ["/api/items/1/thumbnail?size=128&size=1024", "/api/errors?limit=1&limit=2"])
def test_a_query_parameter_given_twice_is_refused(client, url):
    answer = client.get(url)  # one of them was used, the other dropped unseen
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith("the query parameter ") and "came 2 times: send it once" in answer.json()["error"]


@pytest.mark.parametrize(("method", "url"), [
    ("get", "/api/items/1/thumbnail?sizes=128"), ("get", "/api/health?verbose=1"),
    ("post", "/api/items/remove?wiat=true"),
])
def test_an_unknown_query_parameter_is_refused(client, method, url):
    kwargs = {"json": {"paths": ["nothing-here.png"]}} if method == "post" else {}
    answer = getattr(client, method)(url, headers=AUTH, **kwargs)
    assert answer.status_code == 422, answer.text  # it was ignored: size 256, no waiting
    assert answer.json()["error"].startswith("unknown query parameter")


def test_known_query_parameters_and_the_page_are_unaffected(client):
    assert client.get("/api/items/1/thumbnail?size=128").status_code == 200
    waited = client.post("/api/items/remove?wait=true", json={"paths": ["nothing-here.png"]}, headers=AUTH)
    assert waited.status_code == 422 and waited.json()["error"].startswith("not in this collection")  # the job's answer
    assert client.get("/?utm_source=mail").status_code == 200  # a link to the page may carry anything


def test_a_refused_cors_preflight_is_a_json_error(client):
    app = create_app(client.app.state.service.col, ServerConfig(cors_origins=["https://a.example"]))
    with TestClient(app) as http:
        allowed = http.options("/api/search", headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://a.example"
        for origin, method in [("https://evil.example", "POST"), ("https://a.example", "PUT")]:
            refused = http.options("/api/search", headers={"Origin": origin, "Access-Control-Request-Method": method})
            assert refused.status_code == 400 and refused.headers["content-type"] == "application/json", refused.text
            error = refused.json()
            assert error["status"] == 400 and error["error"].startswith("CORS preflight refused (")
            assert "https://a.example" in error["error"]
