"""Adapters read each benchmark layout into tasks; missing files name the expected layout."""

import json
import pickle

import numpy as np
import pytest

from glimpse.eval import augment as aug
from glimpse.eval.datasets import (
    DatasetError,
    load_captioned,
    load_classes,
    load_composed,
    load_copydetect,
    load_groups,
    load_revisitop,
)


def ints(arrays):
    return [a.tolist() for a in arrays]


def test_captioned_tsv(tmp_path, make_image):
    for i in range(3):
        make_image(tmp_path / f"{i}.png", seed=i)
    (tmp_path / "captions.tsv").write_text(
        "image\tcaption\n0.png\ta red thing\n1.png\ta blue thing\n0.png\tred again\n"
        '2.png\t"green, it reads ""EXIT"""\n1.png\ta 5" screen\n')
    t2i, i2t = load_captioned(tmp_path).tasks
    assert [p.name for p in t2i.database.paths] == ["0.png", "1.png", "2.png"]
    # Quoted as csv writers quote a field that holds quotes (as in captioned-dev); a bare quote stays.
    assert t2i.queries.texts[3:] == ['green, it reads "EXIT"', 'a 5" screen']
    assert ints(t2i.judgements[""].positives) == [[0], [1], [0], [2], [1]]
    assert ints(i2t.judgements[""].positives) == [[0, 2], [1, 4], [3]]


def test_captioned_karpathy(tmp_path, make_image):
    (tmp_path / "images").mkdir()
    make_image(tmp_path / "images" / "a.jpg", seed=1)
    make_image(tmp_path / "images" / "b.jpg", seed=2)
    data = {"images": [
        {"filename": "a.jpg", "split": "test", "sentences": [{"raw": "one"}, {"raw": "two"}]},
        {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "three"}]},
    ]}
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(data))
    t2i, i2t = load_captioned(tmp_path).tasks
    assert t2i.queries.texts == ["one", "two"] and len(t2i.database) == 1
    with pytest.raises(DatasetError, match="split 'val'"):
        load_captioned(tmp_path, split="val")


def test_missing_files_name_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="captions.tsv"):
        load_captioned(tmp_path)
    with pytest.raises(DatasetError, match="gnd_roxford5k.pkl"):
        load_revisitop(tmp_path)
    with pytest.raises(DatasetError, match="ukbench00000.jpg"):
        load_groups(tmp_path)
    with pytest.raises(DatasetError, match="CIRR"):
        load_composed(tmp_path)
    with pytest.raises(DatasetError, match="no images"):
        load_copydetect(tmp_path)


def test_groups_ukbench_and_holidays(tmp_path, make_image):
    ukb = tmp_path / "ukb"
    ukb.mkdir()
    for i in range(8):
        make_image(ukb / f"ukbench{i:05d}.jpg", seed=i)
    (task,) = load_groups(ukb).tasks
    assert len(task.queries) == 8 and task.options["ns"]
    assert ints(task.judgements[""].positives)[5] == [4, 6, 7]
    assert ints(task.judgements[""].ignore)[5] == [5]
    assert ints(task.judgements["with query"].positives)[5] == [4, 5, 6, 7]

    hol = tmp_path / "hol"
    hol.mkdir()
    for name in ("100000", "100001", "100002", "100100", "100101"):
        make_image(hol / f"{name}.jpg", seed=int(name))
    (task,) = load_groups(hol).tasks
    assert [p.name for p in task.queries.paths] == ["100000.jpg", "100100.jpg"]
    assert ints(task.judgements[""].positives) == [[1, 2], [4]] and not task.options["ns"]


def test_groups_tsv(tmp_path, make_image):
    for i in range(4):
        make_image(tmp_path / f"{i}.png", seed=i)
    (tmp_path / "groups.tsv").write_text("image\tgroup\tquery\n0.png\ta\t1\n1.png\ta\t0\n2.png\tb\t1\n3.png\tb\t0\n")
    (task,) = load_groups(tmp_path).tasks
    assert ints(task.judgements[""].positives) == [[1], [3]]


def test_revisitop_reads_gnd_and_crops_queries(tmp_path, make_image):
    (tmp_path / "jpg").mkdir()
    for name in ("db0", "db1", "db2", "q0"):
        make_image(tmp_path / "jpg" / f"{name}.jpg", seed=len(name) + ord(name[-1]), size=(64, 48))
    gnd = {"imlist": ["db0", "db1", "db2"], "qimlist": ["q0"],
           "gnd": [{"bbx": [4.0, 2.0, 36.0, 30.0], "easy": [0], "hard": np.array([1]), "junk": [2]}]}
    with open(tmp_path / "gnd_roxford5k.pkl", "wb") as f:
        pickle.dump(gnd, f)
    (task,) = load_revisitop(tmp_path).tasks
    assert task.queries.make(0).size == (32, 28)  # the protocol's query crop
    assert ints(task.judgements["E"].ignore) == [[1, 2]] and ints(task.judgements["M"].positives) == [[0, 1]]


def test_revisitop_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "gnd_rparis6k.pkl", "wb") as f:
        pickle.dump({"imlist": [], "qimlist": [], "gnd": [Evil()]}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_revisitop(tmp_path)


def test_classes_folder_per_class(tmp_path, make_image):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(10):
            make_image(tmp_path / c / f"{i}.png", seed=hash(c) % 1000 + i)
    (task,) = load_classes(tmp_path, queries=2, seed=0, map_at=5).tasks
    assert len(task.queries) == 2 and len(task.database) == 18
    db_classes = [p.parent.name for p in task.database.paths]
    for q, pos in zip(task.queries.paths, task.judgements[""].positives):
        assert {db_classes[j] for j in pos} == {q.parent.name} and len(pos) == 9
    assert task.options["map_at"] == 5


def test_classes_multi_label_file_with_split(tmp_path, make_image):
    rows = [("a.png", "sky,sea", "query"), ("b.png", "sea", "database"), ("c.png", "sky", "database"),
            ("d.png", "car", "database")]
    for i, (name, _, _) in enumerate(rows):
        make_image(tmp_path / name, seed=i)
    (tmp_path / "labels.tsv").write_text("image\tlabels\tsplit\n" + "".join("\t".join(r) + "\n" for r in rows))
    ds = load_classes(tmp_path)
    (task,) = ds.tasks
    assert ints(task.judgements[""].positives) == [[0, 1]]  # shares a label with b and c, not d
    assert ds.info["multi_label"]


def test_composed_cirr_and_fashioniq(tmp_path):
    (tmp_path / "captions").mkdir()
    (tmp_path / "image_splits").mkdir()
    names = ["r", "t", "x", "y"]
    (tmp_path / "image_splits" / "split.rc2.val.json").write_text(json.dumps({n: f"./dev/{n}.png" for n in names}))
    (tmp_path / "captions" / "cap.rc2.val.json").write_text(json.dumps([
        {"pairid": 0, "reference": "r", "target_hard": "t", "caption": "make it red",
         "img_set": {"id": 1, "members": ["r", "t", "x"]}}]))
    (task,) = load_composed(tmp_path).tasks
    assert task.queries.refs == [0] and task.queries.texts == ["make it red"]
    assert ints(task.judgements[""].positives) == [[1]] and ints(task.judgements[""].ignore) == [[0]]
    assert ints(task.judgements["subset"].ignore) == [[0, 3]]  # outside the set, and the reference

    (tmp_path / "image_splits" / "split.dress.val.json").write_text(json.dumps(names))
    (tmp_path / "captions" / "cap.dress.val.json").write_text(json.dumps([
        {"candidate": "x", "target": "y", "captions": ["is longer.", "has stripes"]}]))
    (tmp_path / "captions" / "cap.rc2.val.json").unlink()
    (task,) = load_composed(tmp_path).tasks
    assert task.queries.texts == ["is longer and has stripes"] and "subset" not in task.judgements


def test_copydetect_queries_are_seeded_and_cover_every_kind(tmp_path, make_image):
    for i in range(4):
        make_image(tmp_path / f"{i}.png", seed=i, size=(96, 72))
    ds = load_copydetect(tmp_path, per_image=2, seed=3)
    (task,) = ds.tasks
    assert len(task.queries) == 8 and set(task.breakdown) == set(aug.KINDS)
    assert sum(len(v) for v in task.breakdown.values()) == 8
    assert ints(task.judgements[""].positives) == [[0], [0], [1], [1], [2], [2], [3], [3]]
    again = load_copydetect(tmp_path, per_image=2, seed=3).tasks[0]
    for q in range(8):
        assert np.array_equal(np.asarray(task.queries.make(q)), np.asarray(again.queries.make(q)))
    other = load_copydetect(tmp_path, per_image=2, seed=4).tasks[0]
    assert any(np.asarray(task.queries.make(q)).shape != np.asarray(other.queries.make(q)).shape
               or not np.array_equal(np.asarray(task.queries.make(q)), np.asarray(other.queries.make(q)))
               for q in range(8))


@pytest.mark.parametrize("kind", aug.KINDS)
def test_each_edit_changes_the_image(kind, make_image, tmp_path):
    from PIL import Image

    im = Image.open(make_image(tmp_path / "a.png", seed=1, size=(120, 90))).convert("RGB")
    out = aug.augment(im, kind, np.random.default_rng(0))
    assert out.mode == "RGB"
    assert out.size != im.size or not np.array_equal(np.asarray(out), np.asarray(im))
