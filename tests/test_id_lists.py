"""Id lists: what litvision writes (the audit's exclude_ids.txt, held_out_ids.txt, not_held_out_ids.txt),
litvision reads back (``dataset.exclude_ids``) to the same ids, whatever the file names hold.

The audit used to write ids raw: a name that is not UTF-8 crashed the writer, and one with a tab or a
backslash was written and then refused by the reader.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from litvision.data_audit.clean_split import write_exclusions
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.sampling.exclusions import id_list_text, parse_id_line, parse_id_list, read_exclusion_file
from litvision.tasks.audit_cross_fit import write_id_list
from litvision.utils.errors import DataError
from litvision.utils.names import escape_name
from tests.helpers.weird_names import CLASSES, FILES, build_weird_tree, file_ids

ANY_CHAR = st.characters(exclude_categories=())
TRICKY = st.sampled_from(list("\\\t\n\r\x0b\x1c\x85\u2028 \u00a0#=-@',x0a9\udcff\ud800é"))
COMPONENT = st.text(st.one_of(ANY_CHAR, TRICKY), min_size=1, max_size=10).filter(
    lambda c: "/" not in c and c not in (".", "..")
)
SAMPLE_ID = st.one_of(
    st.lists(COMPONENT, min_size=1, max_size=3).map("/".join),
    st.lists(
        st.binary(min_size=1, max_size=10).filter(lambda b: b"/" not in b and b not in (b".", b"..")),
        min_size=1,
        max_size=3,
    ).map(lambda parts: os.fsdecode(b"/".join(parts))),
    st.sampled_from(["a,b", "id,kind", "#x", " x ", "train/1"]),
)

NAMES_PEOPLE_HAVE = [
    "train/caf\udce9/img\udcff.png",
    "train/tab\there/x.png",
    "val/back\\slash/y.png",
    "train/new\nline.png",
    "#hash.png",
    " lead.png",
    "trail /x.png ",
    "val/=SUM(1+1)/-2.png",
    "a,b",
    "train\\n01440764",
]


@settings(deadline=None)  # a loaded machine must not fail a property
@given(st.lists(SAMPLE_ID, max_size=8), st.text(ANY_CHAR))
@example(NAMES_PEOPLE_HAVE, "comment\nwith a newline \udcff")
def test_a_written_id_list_reads_back_the_same_ids(ids: list[str], comment: str) -> None:
    text = id_list_text([(comment, ids)])
    assert parse_id_list(text) == list(dict.fromkeys(ids))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ids.txt"
        path.write_bytes(text.encode("utf-8"))  # valid UTF-8: no surrogates reach the file
        assert read_exclusion_file(path) == list(dict.fromkeys(ids))


@settings(deadline=None)  # a loaded machine must not fail a property
@given(st.text(st.one_of(ANY_CHAR, TRICKY)))
@example("train\\n01440764\\x.JPEG")
@example("id,given_label,suggested_label,quality")
def test_any_line_is_an_id_a_comment_or_one_data_error(line: str) -> None:
    try:
        result = parse_id_line(line, first=True)
    except DataError as e:
        assert "\n" not in str(e)
        return
    assert result is None or isinstance(result, str) and result


@settings(deadline=None, max_examples=50)
@given(st.binary(max_size=200))
@example(b"\xef\xbb\xbftrain/1\r\ntrain/\\xff\r\n")
def test_any_file_content_gives_ids_or_one_data_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ids.txt"
        path.write_bytes(content)
        try:
            ids = read_exclusion_file(path)
        except DataError as e:
            assert "\n" not in str(e)
            return
    assert all(isinstance(i, str) and i for i in ids)


def test_the_audits_writers_round_trip_names_people_have(tmp_path: Path) -> None:
    groups = [
        ("copies of an image in an earlier source split", NAMES_PEOPLE_HAVE[:5]),
        ("suspected label errors", NAMES_PEOPLE_HAVE[5:]),
    ]
    assert read_exclusion_file(write_exclusions(tmp_path / "exclude_ids.txt", groups)) == NAMES_PEOPLE_HAVE
    assert (
        read_exclusion_file(write_id_list(tmp_path / "held_out_ids.txt", NAMES_PEOPLE_HAVE, "fold 0"))
        == NAMES_PEOPLE_HAVE
    )
    text = (tmp_path / "exclude_ids.txt").read_text(encoding="utf-8")
    assert "train/caf\\xe9/img\\xff.png\n" in text and "val/back\\\\slash/y.png\n" in text


def test_hand_written_lists_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# by hand\r\n\r\n  train/3  \r\nval/n0/x y.JPEG\r\n", encoding="utf-8")
    assert read_exclusion_file(path) == ["train/3", "val/n0/x y.JPEG"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train\\n01440764\\x.JPEG", "line 1: .*backslash in a name is written"),  # a pasted Windows path
        ("train/1\ttest/1", "line 1: .*tab"),
        ("a,b,kind,distance", "line 1: .*CSV header"),
        ("id,pred,top5,prob_top1,label", "line 1: .*CSV header"),  # predictions.csv passed instead of an id list
        ("train/x\\ud800", None),  # an escape of a surrogate that no file name has: read, matches nothing
    ],
)
def test_malformed_lines_name_the_line(tmp_path: Path, line: str, message: str | None) -> None:
    path = tmp_path / "ids.txt"
    path.write_text(line + "\n", encoding="utf-8")
    if message is None:
        assert read_exclusion_file(path) == ["train/x\ud800"]
        return
    with pytest.raises(DataError, match=message):
        read_exclusion_file(path)


def test_an_audit_written_list_excludes_exactly_those_files_of_a_tree_with_such_names(tmp_path: Path) -> None:
    root = build_weird_tree(tmp_path / "tree")
    listed = sorted(file_ids(b"val"))[::2] + sorted(file_ids(b"train"))[1::3]
    exclusions = write_exclusions(tmp_path / "exclude_ids.txt", [("picked", listed)])

    dm = ClassFolderDataModule(
        str(root),
        val_split="val",
        test_split="val",
        batch_size=4,
        num_workers=0,
        progress=False,
        exclude_ids=str(exclusions),
    )
    dm.setup("fit")
    assert set(dm.splits.train.ids.tolist()) == file_ids(b"train") - set(listed)
    assert set(dm.splits.val.ids.tolist()) == file_ids(b"val") - set(listed)
    assert sorted(dm.class_names) == sorted(os.fsdecode(c) for c in CLASSES)
    for sample_id in dm.splits.train.ids.tolist():  # every id still names its file
        assert os.path.isfile(os.path.join(os.fsencode(root), os.fsencode(sample_id)))
    assert len(FILES) * len(CLASSES) + 1 == len(file_ids(b"train"))
    assert escape_name(listed[0]) in exclusions.read_text(encoding="utf-8")
