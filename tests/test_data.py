"""Dataset loaders on tiny on-disk copies of each real layout, the split files, file lists and the torch datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splip_core.data import (
    SPLITS_DIR,
    DatasetError,
    ImageDataset,
    Sample,
    SBIRData,
    TripletDataset,
    load_dataset,
    read_class_list,
    read_file_list,
    resolve_split,
    sketchy_sketch_instance,
)

_colours: dict[Path, tuple[int, int, int]] = {}


def img(path: Path, mode: str = "RGB") -> Path:
    """A tiny image with a colour unique to its path (PNG keeps it exact, so a transform can tell files apart)."""
    colour = _colours.setdefault(path, (len(_colours) % 250, len(_colours) // 250, 77))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).convert(mode).save(path)
    return path


def identify(image: Image.Image) -> tuple[str, tuple[int, int, int]]:
    """A transform that returns the image mode and its colour instead of a tensor."""
    return image.mode, image.getpixel((0, 0))


def by_colour() -> dict[tuple[int, int, int], Path]:
    return {colour: path for path, colour in _colours.items()}


def classes(name: str) -> list[str]:
    return read_class_list(SPLITS_DIR / f"{name}_classes.txt")


# ---------------------------------------------------------------- split files

SPLITS = {
    # (dataset, split name) -> (unseen count, seen count)
    ("sketchy", "split1"): (25, 100),
    ("sketchy", "split1_sempcyc"): (25, 100),
    ("sketchy", "split2"): (21, 104),
    ("tuberlin", "sake"): (30, 220),
    ("tuberlin", "sempcyc"): (30, 220),
    ("quickdraw", "dey"): (30, 80),
}


def test_full_class_lists_have_the_published_sizes():
    assert [len(classes(d)) for d in ("sketchy", "tuberlin", "quickdraw")] == [125, 250, 110]


@pytest.mark.parametrize(("dataset", "split"), list(SPLITS))
def test_split_files_are_complete_subsets(dataset, split):
    n_unseen, n_seen = SPLITS[(dataset, split)]
    unseen = resolve_split(dataset, split)
    everything = classes(dataset)
    assert len(unseen) == len(set(unseen)) == n_unseen
    assert set(unseen) <= set(everything), sorted(set(unseen) - set(everything))
    assert len(set(everything) - set(unseen)) == n_seen


def test_every_split_file_cites_its_source():
    for path in SPLITS_DIR.glob("*.txt"):
        header = [line for line in path.read_text().splitlines() if line.startswith("#")]
        assert any("github.com/" in line for line in header), path.name


def test_default_splits():
    assert resolve_split("sketchy", None) == resolve_split("sketchy", "split1_sake")
    assert resolve_split("tuberlin", None) == resolve_split("tuberlin", "sake")
    assert resolve_split("quickdraw", None) == resolve_split("quickdraw", "dey")


def test_sketchy_split2_is_the_yelamarthi_list():
    assert sorted(resolve_split("sketchy", "split2")) == [
        "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear", "raccoon",
        "rhinoceros", "saw", "scissors", "seagull", "skyscraper", "songbird", "sword", "tree", "wheelchair",
        "windmill", "window",
    ]  # fmt: skip


def test_sempcyc_and_sake_splits_barely_overlap():
    sketchy = set(resolve_split("sketchy", "split1_sempcyc")) & set(resolve_split("sketchy", "split1"))
    assert sketchy == {"bell", "squirrel", "tank", "wheelchair"}
    assert set(resolve_split("tuberlin", "sempcyc")) & set(resolve_split("tuberlin", "sake")) == {"rollerblades"}


@pytest.mark.parametrize(("dataset", "n_train"), [("sketchy", 100), ("tuberlin", 220)])
def test_sempcyc_splits_are_its_seed_0_draw(dataset, n_train):
    """SEM-PCYC: sorted (underscored) class names, np.random.seed(0), choice of the training classes."""
    underscored = sorted(name.replace(" ", "_").replace("-", "_") for name in classes(dataset))
    state = np.random.RandomState(0)
    train = state.choice(underscored, n_train, replace=False)
    unseen = {
        name.replace(" ", "_").replace("-", "_")
        for name in resolve_split(dataset, "sempcyc" if dataset == "tuberlin" else "split1_sempcyc")
    }
    assert unseen == set(underscored) - set(train)


def test_quickdraw_split_keeps_the_on_disk_spelling():
    assert "palm tree" in resolve_split("quickdraw", "dey")
    assert "palm tree" in classes("quickdraw") and "fire_hydrant" in classes("quickdraw")


def test_unknown_split_names_the_choices():
    with pytest.raises(DatasetError, match="split1_sempcyc"):
        resolve_split("sketchy", "split3")


# ---------------------------------------------------------------- Sketchy


def make_sketchy(
    root: Path, names: list[str], sketch_sub="tx_000000000000", ext_dir="EXTEND_image_sketchy", base=".", ext_base=None
) -> Path:
    """Two photos per class (ids <wnid>_1, <wnid>_2), sketches -1/-2 of each, and an extended folder holding
    one new photo plus a copy of photo _1."""
    top = root / base
    for c, name in enumerate(names):
        for p in (1, 2):
            stem = f"n0{c}_{p}"
            img(top / "photo" / sketch_sub / name / f"{stem}.jpg")
            for s in (1, 2):
                img(top / "sketch" / sketch_sub / name / f"{stem}-{s}.png", mode="L")
        ext = (root / (ext_base or base)) / ext_dir / name
        img(ext / "ext_1.jpg")
        img(ext / f"n0{c}_1.jpg")
    return root


def test_sketchy_original_layout_pairs_and_deduplicates(tmp_path):
    make_sketchy(tmp_path, ["airplane", "cup", "hot-air_balloon"])
    data = load_dataset("sketchy", tmp_path, split=["cup"])
    assert data.classes == ["airplane", "cup", "hot-air_balloon"]
    assert data.unseen == ["cup"] and data.seen == ["airplane", "hot-air_balloon"]
    assert len(data.sketches) == 3 * 4
    # 2 originals + 1 new extended photo per class; the extended copy of photo _1 is dropped.
    assert len(data.photos) == 3 * 3
    assert sum(p.instance is None for p in data.photos) == 3
    assert all(p.path.parent.parent.name == "tx_000000000000" for p in data.photos if p.instance)
    photo_ids = {(p.label, p.instance) for p in data.photos}
    assert all((s.label, s.instance) in photo_ids for s in data.sketches)
    queries, gallery = data.fg_split()
    assert len(queries) == 4 and len(gallery) == 2 and {s.instance for s in queries} == {"n01_1", "n01_2"}
    queries, gallery = data.zs_split()
    assert len(queries) == 4 and len(gallery) == 3
    queries, gallery = data.gzs_split()
    assert len(queries) == 4 and len(gallery) == 9
    assert len(data.gzs_split(queries="all")[0]) == 12


def test_sketchy_sake_zse_layout(tmp_path):
    make_sketchy(
        tmp_path,
        ["cup", "swan"],
        sketch_sub="tx_000000000000_ready",
        ext_dir="EXTEND_image_sketchy_ready",
        base="Sketchy/256x256",
        ext_base="Sketchy",
    )
    data = load_dataset("sketchy", tmp_path, split=["swan"])
    assert data.classes == ["cup", "swan"] and len(data.photos) == 6 and len(data.sketches) == 8


def test_sketchy_sempcyc_layout_maps_renamed_folders(tmp_path):
    make_sketchy(tmp_path, ["hot_air_balloon", "jack_o_lantern"], ext_dir="extended_photo")
    data = load_dataset("sketchy", tmp_path, split=["jack_o_lantern"])
    assert data.classes == ["hot-air_balloon", "jack-o-lantern"]
    assert data.unseen == ["jack-o-lantern"]


def test_sketchy_without_extended_photos(tmp_path):
    make_sketchy(tmp_path, ["cup", "swan"], ext_dir="elsewhere")
    with pytest.raises(DatasetError, match="EXTEND_image_sketchy"):
        load_dataset("sketchy", tmp_path, split=["cup"])
    data = load_dataset("sketchy", tmp_path, split=["cup"], extended=False)
    assert len(data.photos) == 4 and all(p.instance for p in data.photos)


def test_sketchy_default_split_names_the_classes_missing_on_disk(tmp_path):
    make_sketchy(tmp_path, ["cup", "swan", "pig"])
    with pytest.raises(DatasetError, match="split classes with no folder on disk") as err:
        load_dataset("sketchy", tmp_path)
    assert "harp" in str(err.value) and "'cup'" not in str(err.value)


def test_sketchy_instance_rule():
    assert sketchy_sketch_instance(Path("a/n02691156_10151-3.png")) == "n02691156_10151"
    assert sketchy_sketch_instance(Path("a/n02691156_10151-10.png")) == "n02691156_10151"


# ---------------------------------------------------------------- TU-Berlin and QuickDraw


def make_two_folder(root: Path, sketch_dir: str, photo_dir: str, sketch_names, photo_names=None, suffix=".jpg"):
    for name, photo_name in zip(sketch_names, photo_names or sketch_names, strict=True):
        for i in range(2):
            img(root / sketch_dir / name / f"{i}.png", mode="L")
            img(root / photo_dir / photo_name / f"n{i}{suffix}")
    return root


@pytest.mark.parametrize(
    ("sketch_dir", "photo_dir", "sketch_names", "photo_names"),
    [
        ("png_ready", "ImageResized_ready", ["bottle opener", "t-shirt", "pig"], None),  # SAKE / ZSE-SBIR
        ("TUBerlin/png_ready", "TUBerlin/ImageResized_ready", ["bottle opener", "t-shirt", "pig"], None),
        ("sketches", "images", ["bottle_opener", "t_shirt", "pig"], None),  # SEM-PCYC
        ("png", "ImageResized", ["bottle opener", "t-shirt", "pig"], ["bottleopener", "tshirt", "pig"]),  # raw
    ],
)
def test_tuberlin_layouts(tmp_path, sketch_dir, photo_dir, sketch_names, photo_names):
    make_two_folder(tmp_path, sketch_dir, photo_dir, sketch_names, photo_names, suffix=".JPEG")
    data = load_dataset("tuberlin", tmp_path, split=["t-shirt", "bottle opener"])
    assert data.classes == ["bottle opener", "pig", "t-shirt"]
    assert data.unseen == ["t-shirt", "bottle opener"] and data.seen == ["pig"]
    assert len(data.sketches) == 6 and len(data.photos) == 6
    assert all(s.instance is None for s in data.photos)


def test_tuberlin_raw_photo_folder_misspellings(tmp_path):
    make_two_folder(tmp_path, "png", "ImageResized", ["mouse (animal)", "trombone"], ["mouse", "tromobone"])
    data = load_dataset("tuberlin", tmp_path, split=["trombone"])
    assert data.classes == ["mouse (animal)", "trombone"]
    assert {p.path.parent.name for p in data.photos if p.label == 1} == {"tromobone"}


@pytest.mark.parametrize(
    ("sketch_dir", "photo_dir"),
    [("QuickDraw/sketches", "QuickDraw/images"), ("QuickDraw_sketches", "EXTEND_image_quickdraw")],
)
def test_quickdraw_layouts_with_the_default_split(tmp_path, sketch_dir, photo_dir):
    unseen = resolve_split("quickdraw", "dey")
    make_two_folder(tmp_path, sketch_dir, photo_dir, [*unseen, "cat", "sea_turtle"])
    data = load_dataset("quickdraw", tmp_path)
    assert sorted(data.unseen) == sorted(unseen) and data.seen == ["cat", "sea_turtle"]
    assert "palm tree" in data.classes and len(data.photos) == 64


# ---------------------------------------------------------------- generic folder


def make_folder(root: Path, names=("apple", "boat", "cat")) -> Path:
    """Two photos per class, two sketches of each photo, and one unpaired sketch (RGB, so colours identify files)."""
    for name in names:
        for p in range(2):
            img(root / "photo" / name / f"{name}{p}.png")
            img(root / "sketch" / name / f"{name}{p}-1.png")
            img(root / "sketch" / name / f"{name}{p}-2.png")
        img(root / "sketch" / name / "loose.png")
    return root


def test_folder_reads_split_json_and_pairs_by_stem(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "split.json").write_text(json.dumps({"unseen": ["cat"]}))
    data = load_dataset("folder", tmp_path)
    assert data.classes == ["apple", "boat", "cat"] and data.unseen == ["cat"] and data.seen == ["apple", "boat"]
    assert sum(s.instance is None for s in data.sketches) == 3  # the loose sketches have no photo
    queries, gallery = data.fg_split()
    assert len(queries) == 4 and len(gallery) == 2
    assert load_dataset("folder", tmp_path, split=["boat"]).unseen == ["boat"]


def test_folder_without_split_json_has_no_unseen_classes(tmp_path):
    data = load_dataset("folder", make_folder(tmp_path))
    assert data.unseen == [] and len(data.seen) == 3
    with pytest.raises(DatasetError, match="no unseen classes"):
        data.zs_split()


# ---------------------------------------------------------------- bad input


def test_missing_root_names_the_path(tmp_path):
    for name in ("sketchy", "tuberlin", "quickdraw", "folder"):
        with pytest.raises(DatasetError, match="nowhere"):
            load_dataset(name, tmp_path / "nowhere")


def test_wrong_layout_lists_the_expected_folders(tmp_path):
    img(tmp_path / "pictures" / "cat" / "1.png")
    with pytest.raises(DatasetError, match="png_ready/<class>/ \\+ ImageResized_ready/<class>/"):
        load_dataset("tuberlin", tmp_path)
    with pytest.raises(DatasetError, match="sketch/tx_000000000000/<class>/"):
        load_dataset("sketchy", tmp_path)
    with pytest.raises(DatasetError, match="sketch/<class>/ \\+ photo/<class>/"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "sketch" / "dog").mkdir()
    (tmp_path / "photo" / "dog").mkdir()
    with pytest.raises(DatasetError, match="dog \\(no sketches"):
        load_dataset("folder", tmp_path)


def test_mismatched_and_unknown_class_folders_are_named(tmp_path):
    make_folder(tmp_path)
    img(tmp_path / "photo" / "zebra" / "z.png")  # photos only: a gallery distractor class
    data = load_dataset("folder", tmp_path)
    assert "zebra" in data.classes and not data.sketches_of(["zebra"]) and len(data.photos_of(["zebra"])) == 1
    img(tmp_path / "sketch" / "yak" / "y.png")
    with pytest.raises(DatasetError, match="only in sketch/: \\['yak'\\]"):
        load_dataset("folder", tmp_path)
    make_two_folder(tmp_path / "sp", "sketches", "images", ["pig", "t-shirt", "t_shirt"])
    with pytest.raises(DatasetError, match="two folders for the same class: \\['t-shirt / t_shirt'\\]"):
        load_dataset("tuberlin", tmp_path / "sp", split=["pig"])
    make_two_folder(tmp_path / "tu", "sketches", "images", ["pig", "unicorn"])
    with pytest.raises(DatasetError, match="not classes of this dataset: \\['unicorn'\\]"):
        load_dataset("tuberlin", tmp_path / "tu", split=["pig"])


def test_split_with_classes_not_on_disk_is_named(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(DatasetError, match="\\['dragon'\\]"):
        load_dataset("folder", tmp_path, split=["cat", "dragon"])
    (tmp_path / "split.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"split\.json"):
        load_dataset("folder", tmp_path)


# ---------------------------------------------------------------- file lists


def test_file_list_with_spaces_in_class_and_file_names(tmp_path):
    (tmp_path / "cname_cid.txt").write_text("palm tree 0\ncat 1\n")
    (tmp_path / "plain.txt").write_text("# a comment\npalm tree\ncat\n")
    (tmp_path / "list.txt").write_text("images/palm tree/a b.jpg 0\nimages/cat/c.jpg 1\n\n")
    assert read_class_list(tmp_path / "cname_cid.txt") == ["palm tree", "cat"]
    assert read_class_list(tmp_path / "plain.txt") == ["palm tree", "cat"]
    samples = read_file_list(tmp_path / "list.txt", tmp_path / "cname_cid.txt", tmp_path, sketchy_sketch_instance)
    assert samples == [
        Sample(tmp_path / "images/palm tree/a b.jpg", 0, "a b"),
        Sample(tmp_path / "images/cat/c.jpg", 1, "c"),
    ]


def test_file_list_errors_name_file_and_line(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "bad_label.txt").write_text("a.png 0\nb.png 2\n")
    (tmp_path / "no_label.txt").write_text("a.png\n")
    with pytest.raises(DatasetError, match=r"bad_label\.txt:2: label 2 outside 0\.\.1"):
        read_file_list(tmp_path / "bad_label.txt", tmp_path / "classes.txt", tmp_path)
    with pytest.raises(DatasetError, match=r"no_label\.txt:1"):
        read_file_list(tmp_path / "no_label.txt", tmp_path / "classes.txt", tmp_path)
    with pytest.raises(DatasetError, match=r"missing\.txt"):
        read_file_list(tmp_path / "missing.txt", tmp_path / "classes.txt", tmp_path)


def test_sbirdata_rejects_inconsistent_content():
    with pytest.raises(DatasetError, match="unseen classes not among"):
        SBIRData(["a"], [], [], unseen=["b"])
    with pytest.raises(DatasetError, match="label 3"):
        SBIRData(["a"], [Sample(Path("x.png"), 3)], [])


# ---------------------------------------------------------------- torch datasets


def test_image_dataset_skips_and_counts_corrupt_files(tmp_path):
    good = [img(tmp_path / f"{i}.png", mode="L") for i in range(3)]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    samples = [Sample(good[0], 0), Sample(bad, 1), Sample(good[1], 2), Sample(good[2], 3)]
    dataset = ImageDataset(samples, identify)
    (mode, colour), label, index = dataset[1]
    assert mode == "RGB" and len(set(colour)) == 1  # a grey sketch comes back as 3 equal channels
    assert index == 2 and label == 2
    items = [dataset[i] for i in range(len(dataset))]
    assert [index for _, _, index in items] == [0, 2, 2, 3]
    assert list(dataset.skipped) == [bad] and len(dataset.skipped) == 1
    with pytest.raises(DatasetError, match="none of the 1 images"):
        ImageDataset([Sample(bad, 0)], identify)[0]


def _paths(item):
    colours = by_colour()
    return {key: colours[item[key][1]] for key in ("sketch", "positive", "negative")}


def test_class_triplets_are_deterministic_per_seed_epoch_and_index(tmp_path):
    data = load_dataset("folder", make_folder(tmp_path, names=("apple", "boat", "cat", "dog")))
    triplets = TripletDataset(data, data.classes, identify, seed=3)
    assert len(triplets) == 4 * 5
    first = [_paths(triplets[i]) for i in range(len(triplets))]
    again = TripletDataset(data, data.classes, identify, seed=3)
    assert [_paths(again[i]) for i in range(len(again))] == first
    triplets.set_epoch(1)
    assert [_paths(triplets[i]) for i in range(len(triplets))] != first
    for i in range(len(triplets)):
        item, paths = triplets[i], _paths(triplets[i])
        assert item["sketch"][0] == "RGB"
        assert item["label"] == data.classes.index(paths["sketch"].parent.name)
        assert paths["positive"].parent.name == paths["sketch"].parent.name
        assert item["negative_label"] != item["label"]
        assert data.classes[item["negative_label"]] == paths["negative"].parent.name


def test_triplet_labels_index_the_given_class_list(tmp_path):
    data = load_dataset("folder", make_folder(tmp_path))
    triplets = TripletDataset(data, ["cat", "apple"], identify)
    labels = {triplets[i]["label"] for i in range(len(triplets))}
    assert labels == {0, 1} and len(triplets) == 10


def test_instance_triplets_use_the_paired_photo(tmp_path):
    data = load_dataset("folder", make_folder(tmp_path))
    triplets = TripletDataset(data, data.classes, identify, level="instance")
    assert len(triplets) == 3 * 4  # loose sketches have no pair
    for i in range(len(triplets)):
        paths = _paths(triplets[i])
        assert paths["positive"].stem == paths["sketch"].stem.rpartition("-")[0]
        assert paths["negative"].parent == paths["positive"].parent and paths["negative"] != paths["positive"]


def test_triplets_skip_a_corrupt_photo(tmp_path):
    make_folder(tmp_path, names=("apple", "boat"))
    broken = tmp_path / "photo" / "apple" / "apple0.png"
    broken.write_bytes(b"garbage")
    data = load_dataset("folder", tmp_path)
    triplets = TripletDataset(data, data.classes, identify)
    items = [_paths(triplets[i]) for i in range(len(triplets))]
    assert broken not in {p for item in items for p in item.values()}
    assert list(triplets.skipped) == [broken]


def test_triplets_reject_unusable_requests(tmp_path):
    data = load_dataset("folder", make_folder(tmp_path))
    with pytest.raises(DatasetError, match="at least two classes"):
        TripletDataset(data, ["cat"], identify)
    with pytest.raises(DatasetError, match="classes not in this dataset"):
        TripletDataset(data, ["cat", "unicorn"], identify)
    with pytest.raises(ValueError, match="level"):
        TripletDataset(data, data.classes, identify, level="pixel")
