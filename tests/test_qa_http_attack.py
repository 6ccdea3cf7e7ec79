"""Defects an adversarial pass over the HTTP API found (qa-http); each test failed before its fix."""

from __future__ import annotations

import os

import pytest

from qa_http_fixtures import AUTH, client  # noqa: F401  (a fixture)

from glimpse.server.app import _nodes


def test_a_thumbnail_pruned_while_served_is_still_sent(client):
    # A removal prunes thumbnails on the writer thread; one pruned between the cache's answer
    # and the response was a 500 (FileResponse opened the path later) and a dropped connection.
    thumbnails = client.app.state.service.thumbnails
    made = thumbnails.get

    def pruned_right_after(*args):
        answer = made(*args)
        thumbnails.prune(set())
        return answer

    thumbnails.get = pruned_right_after
    try:
        for _ in range(2):  # made, then made again after the prune
            answer = client.get("/api/items/0/thumbnail?size=128")
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/jpeg" and answer.content[:2] == b"\xff\xd8"
    finally:
        thumbnails.get = made


def test_an_upload_refused_for_one_bad_file_keeps_none_of_them(client, tmp_path):
    from conftest import make_image

    good = make_image(tmp_path / "new.png", seed=77).read_bytes()
    uploads = client.app.state.service.upload_dir
    before = set(os.listdir(uploads)) if uploads.exists() else set()
    answer = client.post("/api/items/upload?wait=true", headers=AUTH,
                         files=[("image", ("new.png", good, "image/png")), ("image", ("bad.png", b"junk", "image/png"))])
    assert answer.status_code == 415, answer.text
    # the good file was kept in the upload folder, though the request was refused and nothing indexed
    assert (set(os.listdir(uploads)) if uploads.exists() else set()) == before


def _ids(answer):
    assert answer.status_code == 200, answer.text
    return [(hit["id"], round(hit["score"], 5)) for hit in answer.json()["results"]]


def test_only_the_ratio_of_term_weights_matters(client):
    # Weights 1e308 summed to inf and 1e-320 to 0: "the query adds up to nothing" for valid weights.
    def search(*weights):
        terms = [{"text": text, "weight": w} for text, w in zip(("red", "blue"), weights)]
        return _ids(client.post("/api/search", json={"terms": terms, "exact": True}))

    assert search(1e308, 1e308) == search(1, 1)
    assert search(1e308, -1e308 / 2) == search(2, -1)
    assert search(1e-320) == search(1)


JSON = {"Content-Type": "application/json"}


def test_a_json_body_has_its_own_limit_below_the_upload_limit(client):
    # 16 MB of JSON took a minute of parsing and checking (the limit was 4 uploads' worth: 81 MB);
    # the largest body a request needs, a vector of 65,536 numbers, is about 1.5 MB.
    body = b'{"text": "a", "filters": {"min_width": [' + b",".join([b"[]"] * 800_000) + b"]}}"
    for headers in (JSON, {**JSON, "Content-Length": str(len(body))}, {"Content-Type": "text/plain"}):
        answer = client.post("/api/search", content=body, headers=headers)
        assert answer.status_code == 413, answer.text[:300]
        assert answer.json()["error"] == ("request body larger than 2,097,152 bytes "
                                          "(the limit for any body but a multipart image upload)")
    vector = b'{"vector": [' + b",".join([b"-0.12345678901234567"] * 65536) + b"]}"
    assert client.post("/api/search", content=vector, headers=JSON).json()["error"] == \
        "query vector has 65536 dims; this collection uses 64"


def test_a_list_past_its_bound_is_refused_before_its_items_are_read(client):
    # pydantic checks max_length after every item: 100,000 terms were all validated first
    cases = [("/api/search", {"terms": [{"nonsense": 1}] * 100}, "terms: holds 100 items; at most 64 are allowed"),
             ("/api/search", {"vector": ["x"] * 70_000}, "vector: holds 70,000 items; at most 65,536 are allowed"),
             ("/api/items/remove", {"paths": [1] * 1001}, "paths: holds 1,001 items; at most 1,000 are allowed"),
             ("/api/items/add", {"paths": ["a"], "exclude": [1] * 101}, "exclude: holds 101 items; at most 100 are allowed")]
    for url, body, error in cases:
        answer = client.post(url, json=body, headers=AUTH)
        assert (answer.status_code, answer.json()["error"]) == (422, error)


def test_an_answer_names_a_few_field_errors_not_each_of_thousands(client):
    answer = client.post("/api/search", json={"vector": ["x"] * 60_000})
    assert answer.status_code == 422
    assert answer.json()["error"] == ("vector.0: Input should be a valid number; vector.1: Input should be a valid number; "
                                      "vector.2: Input should be a valid number; and 59,997 more errors like these")


def test_the_schema_states_the_bounds_the_server_checks(client):
    # Parameters read as digits rendered pydantic's "ge"/"le", which JSON Schema does not know (so
    # -80 was schema-valid), and FastAPI wrote 2**63 - 1 as the float 2**63.
    schema = client.get("/openapi.json").json()
    for node in _nodes(schema):
        assert not {"ge", "le", "gt", "lt"} & set(node), node
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                assert type(node.get(key, 0)) is int and node.get(key, 0) <= 2**63 - 1, node
    params = {(path, p["name"]): p["schema"] for path, ops in schema["paths"].items()
              for op in ops.values() for p in op.get("parameters", [])}
    assert params["/api/errors", "limit"]["minimum"] == 1 and params["/api/items/{item_id}", "item_id"]["minimum"] == 0
    assert params["/api/items/{item_id}/thumbnail", "size"]["enum"] == [128, 256, 512, 1024]
    for top in (params["/api/items/{item_id}", "item_id"]["maximum"], params["/api/errors", "limit"]["maximum"]):
        assert client.get(f"/api/errors?limit={top}").status_code in (200, 422)  # in range, or over 10,000
    assert client.get(f"/api/items/{2**63 - 1}").status_code == 404


def test_the_schema_lists_every_answer_and_field_the_server_gives_or_takes(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/items/add", "/api/items/remove", "/api/items/upload"):
        assert "200" in schema["paths"][path]["post"]["responses"]  # ?wait=true answers 200
    assert "200" in schema["paths"]["/api/items/{item_id}"]["delete"]["responses"]
    body = schema["components"]["schemas"]["SearchBody"]["properties"]
    assert None in body["refine"]["enum"] and None in body["scoring"]["enum"]  # null is taken
    assert client.post("/api/search", json={"text": "a", "refine": None, "scoring": None}).status_code == 200
    forms = [s for name, s in schema["components"]["schemas"].items() if name.startswith("Body_")]
    assert forms and all(form["additionalProperties"] is False for form in forms)  # only_form_fields
    assert all(form["properties"]["image"]["minItems"] == 1 for form in forms)
    assert schema["components"]["schemas"]["AddPaths"]["properties"]["include"]["items"]["minLength"] == 1
    paths = schema["components"]["schemas"]["RemovePaths"]["properties"]["paths"]
    assert paths["items"]["minLength"] == 1


def test_the_routers_refusals_say_what_to_do(client):
    # Starlette's bare "Not Found" / "Method Not Allowed", and an Allow header without the HEAD we answer
    answer = client.get("/api/nonexistent")
    assert answer.status_code == 404
    assert answer.json()["error"] == "nothing at /api/nonexistent: the API is under /api (see /openapi.json), the search page at /"
    answer = client.request("OPTIONS", "/api/health")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, HEAD")
    assert answer.json()["error"] == "OPTIONS is not taken at /api/health: use GET or HEAD"
    assert client.head("/api/health").status_code == 200
    answer = client.put("/api/search")
    assert (answer.json()["error"], answer.headers["allow"]) == ("PUT is not taken at /api/search: use POST", "POST")


def test_a_number_past_the_parsers_digit_limit_is_a_json_error_in_our_words(client):
    answer = client.post("/api/search", content=b'{"like": ' + b"9" * 5000 + b"}", headers=JSON)
    assert answer.status_code == 400
    assert answer.json()["error"] == "the request body is not valid JSON (a number in it has more than 4,300 digits)"


BIG = "k" * 100_000


def test_an_answer_quotes_at_most_120_characters_of_what_was_sent(client):
    # Keys, option values, form field names and file names were echoed whole: 100 KB answers.
    photo = client.photo
    answers = [
        client.post("/api/search", content='{"text": "a", "%s": 1}' % BIG, headers=JSON),
        client.post("/api/search", content='{"text": "a", "filters": {"%s": 1}}' % BIG, headers=JSON),
        client.post("/api/search", content='{"text": "a", "%s": 1, "%s": 2}' % (BIG, BIG), headers=JSON),
        client.post("/api/search", json={"text": "a", "refine": BIG}),
        client.post("/api/search", json={"text": "a", "scoring": BIG}),
        client.post("/api/search", json={"text": "a", "fusion": BIG}),
        client.post("/api/search/image", files={"image": ("a.png", photo, "image/png")}, data={"f" * 900: "1"}),
        client.post("/api/search/image", files={"image": ("f" * 900 + ".png", b"junk", "image/png")}),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500 and len(answer.json()["error"]) < 400, answer.text[:300]


INVISIBLE = ["\x00", "\x00\x01\x7f", "\u200b", "\ufeff\u200b", "\u2028 \u200b"]


def test_text_with_nothing_to_read_is_empty_as_blank_text_is(client):
    # Only spaces were "empty"; a NUL byte or a zero-width space searched as the empty string
    # (every photo at the same score) and text:"\u200b" matched nothing, unrefused.
    for text in INVISIBLE:
        for body, error in [({"text": text}, "the text query is empty"),
                            ({"terms": [{"text": text}]}, "a text term is empty"),
                            ({"terms": f"2:{text} + red"}, "a text term is empty")]:
            answer = client.post("/api/search", json=body)
            assert (answer.status_code, answer.json()["error"]) == (422, error), (body, answer.text)
        for query in (f'text:"{text}"', f'"{text}"'):
            answer = client.post("/api/search", json={"terms": query})
            assert answer.status_code == 422 and answer.json()["error"].startswith(("text: needs", "empty quoted")), answer.text
    assert client.post("/api/search", json={"text": "a\u200b"}).status_code == 200


def test_the_engine_says_the_same_of_text_with_nothing_to_read(client):
    col = client.app.state.service.col
    with pytest.raises(ValueError, match="the text query is empty"):
        col.search(text="\u200b\x00", k=1)


@pytest.mark.parametrize(("body", "content_type", "why"), [
    (b"--b--\r\n", "multipart/form-data", "Missing boundary in multipart"),
    (b'--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--\r\n', "multipart/form-data; boundary=b",
     'The Content-Disposition header field "name" must be provided'),
    (b"".join(b'--b\r\nContent-Disposition: form-data; name="x%d"\r\n\r\nv\r\n' % i for i in range(1001)) + b"--b--\r\n",
     "multipart/form-data; boundary=b", "Too many fields. Maximum number of fields is 1000"),
], ids=["no-boundary", "no-name", "1001-fields"])
@pytest.mark.parametrize("url", ["/api/search/image", "/api/items/upload"])
def test_a_malformed_form_says_what_to_send(client, url, body, content_type, why):
    answer = client.post(url, content=body, headers={**AUTH, "Content-Type": content_type})
    assert answer.status_code == 400
    assert answer.json()["error"] == (f"the form cannot be read ({why}): send multipart/form-data, "
                                      'each image a file part (name="image"; filename="photo.jpg")')


def test_an_original_is_served_as_the_image_it_is_not_as_its_name_says(client, tmp_path):
    # A PNG named page.html with a script after its pixels was served as text/html from the
    # server's origin (the page links every original); one named .svg as image/svg+xml.
    from conftest import make_image

    roots = client.app.state.service.roots()
    folder = roots[0] / "hostile"
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(["page.html", "drawing.svg", "plain.png"]):
        data = make_image(tmp_path / "x.png", seed=60 + i).read_bytes()
        (folder / name).write_bytes(data + b"<script>alert(document.domain)</script>")
    named = [str(folder / name) for name in ("page.html", "drawing.svg", "plain.png")]  # a folder scan takes image names only
    answer = client.post("/api/items/add?wait=true", json={"paths": named}, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["result"]["indexed"] == 3, answer.text
    hits = client.post("/api/search", json={"text": "a", "k": 100, "filters": {"path_prefix": str(folder)}}).json()["results"]
    assert len(hits) == 3
    for hit in hits:
        original = client.get(hit["image"])
        assert original.status_code == 200 and original.headers["content-type"] == "image/png", hit
        assert "sandbox" in original.headers["content-security-policy"]
        assert original.content == (folder / hit["path"].rsplit("/", 1)[1]).read_bytes()
