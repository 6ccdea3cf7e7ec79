"""Filters on Milvus find what the local store finds for paths holding quotes, backslashes,
wildcards, tabs, line breaks and non-ASCII letters; no filter text changes the expression's meaning."""

from __future__ import annotations

import pytest

from milvus_fixtures import lite_server  # noqa: F401  (a fixture)

import glimpse
from glimpse.milvus.expr import expressible, to_expression, under
from glimpse.query.filters import Filter

NAMES = ['a"b.png', "a'b.png", "back\\slash.png", "100%.png", "u_x.png", "caf\u00e9.png", "tab\tx.png", "nl\nx.png",
         'q" or path != "x.png', "plain.png"]
FOLDERS = ["plain", "d\\b", 'd"q']


@pytest.fixture(scope="module")
def local_and_milvus(lite_server, tmp_path_factory):  # noqa: F811
    from conftest import make_image

    from glimpse.encoders import create_encoder

    root = tmp_path_factory.mktemp("odd")
    seed = 0
    for folder in FOLDERS:
        (root / "photos" / folder).mkdir(parents=True)
        for name in NAMES:
            make_image(root / "photos" / folder / name, seed=seed)
            seed += 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLIMPSE_HOME", str(root / "home"))
        with (glimpse.open(str(root / "local"), create_encoder("hash")) as local,
              glimpse.open(f"milvus://{lite_server}/odd_names", create_encoder("hash")) as col):
            local.index([root / "photos"])
            col.index([root / "photos"])
            yield local, col, root / "photos"


HOSTILE = ['x" or path != "', 'x\\" or path != \\"', "\\", '"', "%", "_", '") or (id >= 0', "\\x22", "a\\u0022b"]


def _filters(photos) -> list[dict]:
    out = [{"path_glob": "*"}, {"path_glob": "*\\*"}, {"path_glob": "*%*"}, {"path_glob": "*_*"}, {"path_glob": "*\"*"}]
    for folder in FOLDERS:
        out.append({"path_prefix": str(photos / folder)})
        for name in NAMES:
            out += [{"path_prefix": str(photos / folder / name)}, {"path_glob": f"*/{folder}/{name}"}, {"path_glob": f"*{name}"}]
    for text in HOSTILE:
        out += [{"path_prefix": text}, {"path_prefix": f"{photos}/{text}"}, {"path_glob": f"*{text}*"}]
    return out


def test_odd_paths_filter_on_milvus_as_locally(local_and_milvus):
    local, col, photos = local_and_milvus
    query = photos / "plain" / "plain.png"
    differ = []
    for fields in _filters(photos):
        filters = Filter(**fields)
        found = [sorted(h.path for h in c.search(image=query, k=100, filters=filters)) for c in (local, col)]
        if found[0] != found[1]:
            differ.append((fields, len(found[0]), len(found[1])))
    assert differ == []


@pytest.mark.parametrize("infix", [True, False])
def test_like_patterns_hold_no_backslash_line_break_or_wildcards_alone(infix):
    for glob in ["*\\*", "*/d\\b/*.png", "*nl\nx*", "*%*", "*_*", "*?*"]:
        expression = to_expression(Filter(path_glob=glob), infix=infix)
        assert "\\\\" not in expression and "\n" not in expression and "\\n" not in expression, expression
        assert 'like "%"' not in expression and 'like "%_%"' not in expression, expression
        assert not expressible(Filter(path_glob=glob), infix=infix)  # a superset: the paths are checked
    assert "\\" not in under(["/photos/d\\b", "/photos/nl\nx.png"])


def test_a_quote_in_a_filter_stays_inside_its_string():
    expression = to_expression(Filter(path_prefix='/p/x" or path != "'))
    assert expression == '(path == "/p/x\\" or path != \\"" or path like "/p/x\\" or path != \\"/%")'
