"""The pure helpers of chajipoa.platform.files (plugins/module_utils/file_set.py), on real files under tmp_path."""
from __future__ import annotations

import base64
import os
import stat

import pytest

from ansible_collections.chajipoa.platform.plugins.module_utils import file_set

CONTENT = base64.b64encode(b"x\n").decode("ascii")


@pytest.mark.parametrize(("entry", "problem"), [
    ({}, "dest must be an absolute path, got None"),
    ({"dest": ""}, "dest must be an absolute path, got ''"),
    ({"dest": "etc/example.conf", "content_base64": CONTENT}, "dest must be an absolute path, got 'etc/example.conf'"),
    ({"dest": "/etc/x", "state": "fifo"}, "/etc/x: state must be one of file, directory, link, absent, got 'fifo'"),
    ({"dest": "/etc/x"}, "/etc/x: a file needs its content"),
    ({"dest": "/etc/x", "state": "file", "content_base64": None}, "/etc/x: a file needs its content"),
    ({"dest": "/etc/x", "state": "directory", "content_base64": CONTENT}, "/etc/x: content given for state directory"),
    ({"dest": "/etc/x", "state": "absent", "content_base64": ""}, "/etc/x: content given for state absent"),
    ({"dest": "/etc/x", "content_base64": CONTENT, "validate": "visudo -c"},
     "/etc/x: validate must contain %s (the candidate file's path), got 'visudo -c'"),
])
def test_entry_problem_names_each_refusal(entry, problem):
    assert file_set.entry_problem(entry) == problem


@pytest.mark.parametrize("entry", [
    {"dest": "/etc/x", "content_base64": CONTENT},
    {"dest": "/etc/x", "state": None, "content_base64": ""},
    {"dest": "/etc/x", "content_base64": CONTENT, "validate": "visudo -cf %s"},
    {"dest": "/etc/x", "state": "directory", "validate": None},
    {"dest": "/etc/x", "state": "absent"},
])
def test_entry_problem_accepts_good_entries(entry):
    assert file_set.entry_problem(entry) is None


def test_wanted_bytes_decodes_the_content():
    assert file_set.wanted_bytes({"content_base64": base64.b64encode(b"\x00\xffa").decode()}) == b"\x00\xffa"


def test_current_bytes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old\x00")
    assert file_set.current_bytes(str(path)) == b"old\x00"
    assert file_set.current_bytes(str(tmp_path / "missing")) is None
    assert file_set.current_bytes(str(tmp_path)) is None
    assert file_set.current_bytes(str(path / "under-a-file")) is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_set.current_bytes(str(empty)) == b""


def test_content_differs(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"same")
    assert not file_set.content_differs(str(path), b"same")
    assert file_set.content_differs(str(path), b"other")
    assert file_set.content_differs(str(tmp_path / "missing"), b"")


def test_write_candidate_leaves_a_file_beside_the_dest_and_removes_nothing(tmp_path):
    (tmp_path / "example.conf").write_bytes(b"old")
    (tmp_path / "other").write_bytes(b"kept")
    candidate = file_set.write_candidate(str(tmp_path), b"new\x00content")
    assert os.path.dirname(candidate) == str(tmp_path)
    assert os.path.basename(candidate).startswith(".chajipoa-files-")
    with open(candidate, "rb") as handle:
        assert handle.read() == b"new\x00content"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["example.conf", "other", os.path.basename(candidate)])
    assert (tmp_path / "example.conf").read_bytes() == b"old"
    assert (tmp_path / "other").read_bytes() == b"kept"


def test_write_candidate_in_a_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_set.write_candidate(str(tmp_path / "missing"), b"x")
    assert not list(tmp_path.iterdir())


def test_inherit_attributes_keeps_the_replaced_files_mode(tmp_path):
    dest = tmp_path / "dest"
    dest.write_text("old")
    dest.chmod(0o640)
    candidate = file_set.write_candidate(str(tmp_path), b"new")
    assert stat.S_IMODE(os.stat(candidate).st_mode) == 0o600
    file_set.inherit_attributes(candidate, str(dest))
    assert stat.S_IMODE(os.stat(candidate).st_mode) == 0o640
    assert (os.stat(candidate).st_uid, os.stat(candidate).st_gid) == (os.stat(dest).st_uid, os.stat(dest).st_gid)


def test_inherit_attributes_leaves_a_mode_the_entry_sets(tmp_path):
    dest = tmp_path / "dest"
    dest.write_text("old")
    dest.chmod(0o644)
    candidate = file_set.write_candidate(str(tmp_path), b"new")
    file_set.inherit_attributes(candidate, str(dest), mode=False, owner=False, group=False)
    assert stat.S_IMODE(os.stat(candidate).st_mode) == 0o600


def test_inherit_attributes_gives_a_new_file_0666_less_the_umask(tmp_path):
    candidate = file_set.write_candidate(str(tmp_path), b"new")
    previous = os.umask(0o027)
    try:
        file_set.inherit_attributes(candidate, str(tmp_path / "new"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(candidate).st_mode) == 0o640


def test_remove_a_file(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    assert file_set.remove(str(path)) is True
    assert not path.exists()


def test_remove_a_link_not_its_target(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "kept").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert file_set.remove(str(link)) is True
    assert not os.path.lexists(link)
    assert (target / "kept").read_text() == "x"


def test_remove_a_dangling_link(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert file_set.exists(str(link))
    assert file_set.remove(str(link)) is True
    assert not os.path.lexists(link)


def test_remove_a_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    (tree / "g").write_text("y")
    assert file_set.remove(str(tree)) is True
    assert not tree.exists()
    assert list(tmp_path.iterdir()) == []


def test_remove_nothing(tmp_path):
    assert file_set.remove(str(tmp_path / "missing")) is False
    assert not file_set.exists(str(tmp_path / "missing"))


def test_text_for_diff():
    assert file_set.text_for_diff(None) == ""
    assert file_set.text_for_diff(b"") == ""
    assert file_set.text_for_diff("caf\u00e9\n".encode()) == "caf\u00e9\n"
    assert file_set.text_for_diff(b"\xff\xfe\x00\x01") == "(binary, 4 bytes)\n"


def test_a_snapshot_restores_a_file_its_mode_and_content(tmp_path):
    path = tmp_path / "conf"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o640)
    kept = file_set.snapshot(str(path))
    path.write_bytes(b"new\n")
    os.chmod(path, 0o600)
    file_set.restore(str(path), kept)
    assert path.read_bytes() == b"old\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["conf"]


def test_a_snapshot_of_nothing_removes_what_came_since(tmp_path):
    created_file, created_dir = tmp_path / "file", tmp_path / "dir"
    kept_file, kept_dir = file_set.snapshot(str(created_file)), file_set.snapshot(str(created_dir))
    created_file.write_text("x")
    created_dir.mkdir()
    file_set.restore(str(created_file), kept_file)
    file_set.restore(str(created_dir), kept_dir)
    assert os.listdir(tmp_path) == []


def test_a_removed_link_comes_back_pointing_where_it_did(tmp_path):
    link = tmp_path / "link"
    link.symlink_to("target-that-need-not-exist")
    kept = file_set.snapshot(str(link))
    file_set.remove(str(link))
    file_set.restore(str(link), kept)
    assert os.readlink(link) == "target-that-need-not-exist"


def test_a_removed_directory_comes_back_empty_with_its_mode(tmp_path):
    directory = tmp_path / "tree"
    (directory / "inside").mkdir(parents=True)
    os.chmod(directory, 0o750)
    kept = file_set.snapshot(str(directory))
    file_set.remove(str(directory))
    file_set.restore(str(directory), kept)
    assert os.listdir(directory) == []
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_missing_directories_lists_what_makedirs_creates_outermost_first(tmp_path):
    wanted = tmp_path / "a" / "b" / "c"
    assert file_set.missing_directories(str(wanted)) == [str(tmp_path / "a"), str(tmp_path / "a" / "b"), str(wanted)]
    (tmp_path / "a").mkdir()
    assert file_set.missing_directories(str(wanted)) == [str(tmp_path / "a" / "b"), str(wanted)]
    assert file_set.missing_directories(str(tmp_path)) == []


def test_link_to_replaces_a_file_or_link_in_one_rename(tmp_path):
    path = tmp_path / "localtime"
    path.write_text("a file")
    file_set.link_to(str(path), "../zoneinfo/Etc/UTC")
    assert os.readlink(path) == "../zoneinfo/Etc/UTC"
    file_set.link_to(str(path), "../zoneinfo/Africa/Lusaka")
    assert os.readlink(path) == "../zoneinfo/Africa/Lusaka"
    assert sorted(os.listdir(tmp_path)) == ["localtime"]


@pytest.mark.parametrize("entry", [{"dest": "/etc/localtime", "state": "link"},
                                   {"dest": "/etc/x", "state": "directory", "target": "/y"}])
def test_only_a_link_has_a_target_and_it_needs_one(entry):
    assert file_set.entry_problem(entry) == f"{entry['dest']}: a link needs its target, and only a link has one"


def test_an_entry_before_the_directory_entry_it_needs_is_refused():
    entries = [{"dest": "/usr/local/lib/tool/module.py"}, {"dest": "/usr/local/lib/tool", "state": "directory"}]
    assert file_set.order_problem(entries) == "/usr/local/lib/tool/module.py is listed before /usr/local/lib/tool, the directory entry it needs"
    assert file_set.order_problem(list(reversed(entries))) is None


def test_a_sibling_with_a_common_prefix_is_not_a_parent():
    assert file_set.order_problem([{"dest": "/etc/tool.conf"}, {"dest": "/etc/tool", "state": "directory"}]) is None


def test_a_snapshot_keeps_the_bytes_it_is_given_for_a_regular_file(tmp_path):
    path = tmp_path / "conf"
    path.write_bytes(b"on disk\n")
    assert file_set.snapshot(str(path), b"on disk\n")["content"] == b"on disk\n"
    link = tmp_path / "link"
    link.symlink_to("conf")
    assert file_set.snapshot(str(link), b"on disk\n") == {"kind": "link", "target": "conf", **{
        key: value for key, value in file_set.snapshot(str(link)).items() if key in ("mode", "uid", "gid")}}
