"""Words in images from a new user's side: what an empty answer says, and text: terms."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from glimpse.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    return " ".join(result.output.split())


def test_has_text_on_a_collection_never_read_says_how_to_read_words(tmp_path, image_dir):
    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    for query in (["a photo", "--has-text"], ['text:"exit only"']):
        result = invoke("search", *query, "-c", col)
        assert result.exit_code == 0, result.output
        assert "glimpse enrich --ocr" in said(result)
    plain = invoke("search", "a photo", "--min-width", "100000", "-c", col)  # words are not the reason here
    assert "nothing passed the filters" in said(plain) and "enrich" not in said(plain)


def test_a_text_term_no_image_holds_is_not_blamed_on_filters(tmp_path, image_dir, hash_encoder, monkeypatch):
    # It said "nothing passed the filters" with no filter given.
    import glimpse
    from glimpse.enrich import ocr as ocr_pass
    from glimpse.storage.words import Word

    monkeypatch.setattr(ocr_pass, "rapidocr_reader", lambda: lambda image: [Word("RIGHT", [[1, 2], [9, 2], [9, 5], [1, 5]], 0.9)])
    col = tmp_path / "col"
    with glimpse.open(col, encoder=hash_encoder) as c:
        c.add([image_dir], ocr=True)
    plain = invoke("search", 'text:"exit only"', "-c", col)
    assert plain.exit_code == 0, plain.output
    assert "no image's words hold the text: term" in said(plain) and "filters" not in said(plain)
    filtered = invoke("search", 'text:"exit only"', "--min-width", "1", "-c", col)
    assert "no filtered image's words hold" in said(filtered)
    assert "no good matches" in said(invoke("search", 'text:"right"', "--min-width", "100000", "-c", col))


@pytest.mark.parametrize("command", ["search", "index", "serve"])
def test_help_reads_naturally(command):
    text = said(invoke(command, "--help"))
    assert "(true)" not in text and "(false)" not in text  # --has-text / --no-text are flags, not values
    assert "--include <list" not in text and "--root <list" not in text and "--cors <list" not in text  # one value each, repeatable


@pytest.mark.parametrize("query, where", [('text:"exit" dog', "after it"), ('dog text:"exit"', "before it"),
                                          ("a sign text:'stop' here", "before it")])
def test_a_text_term_run_into_other_words_says_to_join_them(query, where):
    from glimpse.query.language import parse_query

    with pytest.raises(ValueError, match=f"a term of its own: put \\+ or - between it and the words {where}"):
        parse_query(query)
    result = invoke("search", query, "-c", "/nonexistent-collection")  # refused before the collection is opened
    assert result.exit_code == 2 and "term of its own" in said(result) and "never closed" not in said(result)


def test_a_captions_file_with_a_byte_order_mark_is_read(tmp_path, image_dir):
    from glimpse.query.adapt import read_captions

    rows = "image\tcaption\n" + "".join(f"img{i:02d}.png\ta photo number {i}\n" for i in (1, 2, 4, 5))
    (image_dir / "captions.tsv").write_text(rows, encoding="utf-8-sig")  # Excel's "UTF-8 text" export
    assert [caption for _, caption in read_captions(image_dir / "captions.tsv")][0] == "a photo number 1"
    (image_dir / "img01.png.txt").write_text("a red sign", encoding="utf-8-sig")
    from glimpse.query.adapt import sidecar_caption

    assert sidecar_caption(image_dir / "img01.png") == "a red sign"


def test_an_option_after_the_double_dash_is_not_taken_for_query_words(tmp_path, image_dir):
    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    result = invoke("search", "--", "-1:night", "-c", col)  # as the README's `glimpse search -- "-1:night"`, plus -c
    assert result.exit_code == 2 and "'-c' came after --" in said(result) and "no glimpse collection" not in said(result)
    assert invoke("search", "-c", col, "--", "-1:night").exit_code == 0


def test_adapt_refuses_captions_and_remove_together(tmp_path, image_dir):
    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    (image_dir / "captions.tsv").write_text("image\tcaption\nimg01.png\ta photo\n")
    result = invoke("adapt", "--captions", image_dir / "captions.tsv", "--remove", "-c", col)
    assert result.exit_code == 2 and "--captions or --remove" in said(result)  # one of them was silently dropped
