import numpy as np
import pytest

import glimpse
from glimpse.query.adapt import Contrastive, TextAdapter, fit_adapter, held_out_split, read_captions

WORDS = ["apple", "bridge", "castle", "dune", "engine", "forest", "garden", "harbor", "island", "jungle",
         "kettle", "lantern", "meadow", "needle", "orchard", "pepper", "quarry", "river", "saddle", "temple",
         "valley", "willow", "yacht", "zebra", "anchor", "beacon", "canyon", "dragon", "ember", "falcon"]


@pytest.fixture
def captioned(tmp_path, collection_uri, make_image, hash_encoder):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, word in enumerate(WORDS):
        make_image(folder / f"p{i:02d}.png", seed=100 + i)
        (folder / f"p{i:02d}.png.txt").write_text(f"a photo of the {word} at dusk")
    col = glimpse.open(collection_uri, encoder=hash_encoder)
    col.index([folder])
    return col, folder


def mean_rank(col, folder, **kw):
    ranks = []
    for i, word in enumerate(WORDS):
        found = [r.path for r in col.search(text=f"the {word}", k=len(WORDS), **kw)]
        ranks.append(found.index(str(folder / f"p{i:02d}.png")) + 1)
    return float(np.mean(ranks))


@pytest.mark.parametrize("kind", ["contrastive", "ridge"])
def test_adapt_from_sidecars_is_stored_used_versioned_and_removable(captioned, kind):
    col, folder = captioned
    before = mean_rank(col, folder)
    report = col.adapt(kind=kind, holdout=0)
    assert report.pairs == len(WORDS) and report.version == 1 and report.missing == 0
    after = mean_rank(col, folder)
    assert after < before - 3  # the captions' words now lead to their photos
    assert mean_rank(col, folder, adapted=False) == before

    again = glimpse.open(col.location)  # stored in the collection: a new process sees it
    assert mean_rank(again, folder) == after
    assert col.adapt(kind=kind, holdout=0).version == 2
    assert sorted(p.name for p in col.path.glob("adapt-*.npz")) == ["adapt-2.npz"]

    assert col.remove_adapt() and not list(col.path.glob("adapt-*.npz"))
    assert mean_rank(col, folder) == before and not col.remove_adapt()


def test_adapt_reads_a_tsv_and_reports_a_holdout(captioned, tmp_path):
    col, folder = captioned
    tsv = folder / "captions.tsv"
    tsv.write_text("image\tcaption\n" + "".join(f"p{i:02d}.png\tthe {w}\n" for i, w in enumerate(WORDS))
                   + "gone.png\ta missing photo\n")
    assert read_captions(tsv)[0] == (folder / "p00.png", "the apple")
    report = col.adapt(tsv, holdout=0.25)
    assert report.pairs == len(WORDS) and report.missing == 1
    assert report.holdout_images > 0 and 0.0 <= report.before <= 1.0 and 0.0 <= report.after <= 1.0
    assert report.holdout_images == held_out_split(len(WORDS), 0.25, seed=0).sum()  # the split eval scores with
    meta = col._meta.get_meta()["adapt"]
    assert meta["kind"] == "contrastive" and meta["pairs"] == len(WORDS) and meta["format"] == 1


def test_adapt_refuses_what_it_cannot_learn_from(captioned, tmp_path):
    col, folder = captioned
    bad = tmp_path / "bad.tsv"
    bad.write_text("path,text\nx,y\n")
    with pytest.raises(ValueError, match="header"):
        col.adapt(bad)
    elsewhere = tmp_path / "elsewhere.tsv"
    elsewhere.write_text("image\tcaption\nnope.png\ta cat\n")
    with pytest.raises(ValueError, match="not hold"):
        col.adapt(elsewhere)
    with pytest.raises(ValueError, match="too few"):
        fit_adapter(np.ones((5, 8), np.float32), np.ones((5, 8), np.float32))
    with pytest.raises(ValueError, match="unknown adaptation"):
        col.adapt(kind="magic", holdout=0)


def test_adapter_round_trips_and_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    texts = np.zeros((40, 12), np.float32)
    texts[:, 8:] = rng.standard_normal((40, 4))  # text lives in 4 of 12 dims, as with lite0-minilm
    images = rng.standard_normal((40, 12)).astype(np.float32)
    a = fit_adapter(texts, images, seed=3)
    b = fit_adapter(texts, images, seed=3)
    assert a.dims.tolist() == [8, 9, 10, 11] and a.matrix.shape == (4, 12)
    assert np.array_equal(a.matrix, b.matrix)
    a.save(tmp_path / "m.npz")
    loaded = TextAdapter.load(tmp_path / "m.npz")
    assert np.allclose(loaded(texts), a(texts)) and np.allclose(np.linalg.norm(a(texts), axis=1), 1.0)


def test_contrastive_penalty_keeps_the_map_near_the_plain_query():
    rng = np.random.default_rng(1)
    texts = np.zeros((40, 12), np.float32)
    texts[:, 8:] = rng.standard_normal((40, 4))
    images = rng.standard_normal((40, 12)).astype(np.float32)
    identity = np.zeros((4, 12), np.float32)
    identity[np.arange(4), np.arange(8, 12)] = 1.0
    moved = {penalty: np.abs(fit_adapter(texts, images, training=Contrastive(steps=30, penalty=penalty)).matrix
                             - identity).sum() for penalty in (0.0, 0.1, 10.0)}
    assert moved[0.0] > moved[0.1] > moved[10.0] > 0.0
    assert np.array_equal(fit_adapter(texts, images).matrix,
                          fit_adapter(texts, images, training=Contrastive(penalty=Contrastive().penalty)).matrix)

XMP = """<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" {attributes}>{body}</rdf:Description>
</rdf:RDF></x:xmpmeta>"""


def test_sidecar_captions_from_txt_and_xmp(tmp_path):
    from glimpse.query.adapt import sidecar_caption

    photo = tmp_path / "a.jpg"
    assert sidecar_caption(photo) is None
    (tmp_path / "a.xmp").write_text(XMP.format(attributes="", body=(
        "<dc:title><rdf:Alt><rdf:li xml:lang='x-default'>Title only</rdf:li></rdf:Alt></dc:title>"
        "<dc:description><rdf:Alt><rdf:li xml:lang='de'>Ein Hund</rdf:li>"
        "<rdf:li xml:lang='x-default'>A dog on the beach</rdf:li></rdf:Alt></dc:description>")))
    assert sidecar_caption(photo) == "A dog on the beach"  # description over title, x-default first
    (tmp_path / "a.jpg.xmp").write_text(XMP.format(attributes='dc:description="Attribute form"', body=""))
    assert sidecar_caption(photo) == "Attribute form"  # photo.jpg.xmp is looked at first
    (tmp_path / "a.jpg.xmp").write_text("<not xml")
    assert sidecar_caption(photo) == "A dog on the beach"  # a broken sidecar is skipped
    (tmp_path / "a.txt").write_text("  plain words \n")
    assert sidecar_caption(photo) == "plain words"  # .txt wins over .xmp
