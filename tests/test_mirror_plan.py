"""Unit tests of ``ftpclient.mirror.plan_mirror`` and ``ftpclient.globbing.split_words``."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from ftpclient.globbing import split_words
from ftpclient.mirror import FileInfo, Tree, local_tree, plan_mirror
from ftpproto.digest import new_hasher


def tree(
    files: dict[str, FileInfo], folders: set[str] | None = None, others: set[str] | None = None
) -> Tree:
    """A :class:`Tree` of the given files, folders and links."""
    return Tree(dict(files), set(folders or ()), set(others or ()))


def test_size_or_time_decides_without_digests() -> None:
    source = tree({"a": FileInfo(1, 10), "b": FileInfo(2, 10), "c": FileInfo(3, 10)})
    target = tree({"a": FileInfo(1, 10), "b": FileInfo(2, 11), "c": FileInfo(4, 10)})
    plan = plan_mirror(source, target)
    assert plan.copy == ["b", "c"] and plan.unchanged == 1 and plan.remove == []


def test_digest_decides_with_c_and_only_a_time_is_set_for_the_same_bytes() -> None:
    source = tree({"same": FileInfo(1, 10, "d1"), "other": FileInfo(1, 10, "d2")})
    target = tree({"same": FileInfo(1, 99), "other": FileInfo(1, 10)})
    hashed: list[str] = []

    def local(path: str) -> str:
        hashed.append(path)
        return {"same": "d1", "other": "dX"}[path]

    plan = plan_mirror(source, target, by_digest=True, target_digest=local)
    assert plan.copy == ["other"] and plan.set_time == [("same", 10)] and plan.unchanged == 1
    assert sorted(hashed) == ["other", "same"]


def test_delete_removes_top_most_extras_deepest_first_and_clashes_first() -> None:
    source = tree({"keep": FileInfo(1, 1), "was_dir": FileInfo(1, 1)}, {"now_dir"})
    target = tree(
        {
            "keep": FileInfo(1, 1),
            "x/y/z": FileInfo(1, 1),
            "q/r": FileInfo(1, 1),
            "now_dir": FileInfo(1, 1),
        },
        {"x", "x/y", "q", "was_dir"},
    )
    plan = plan_mirror(source, target, delete=True)
    assert plan.remove == ["q", "x"]
    assert sorted(plan.remove_first) == ["now_dir", "was_dir"]
    assert plan.make_folders == ["now_dir"] and plan.copy == ["was_dir"]
    kept = plan_mirror(source, target, delete=False)
    assert sorted(kept.skipped) == ["now_dir", "was_dir"] and kept.remove == []


def test_a_clash_folder_is_removed_once_and_skipped_clashes_skip_what_they_hold() -> None:
    source = tree({"f": FileInfo(1, 1), "d/inner": FileInfo(1, 1)}, {"d", "d/sub"})
    target = tree({"f/old": FileInfo(1, 1), "d": FileInfo(1, 1)}, {"f"})
    plan = plan_mirror(source, target, delete=True)
    assert sorted(plan.remove_first) == ["d", "f"] and plan.remove == []
    assert plan.make_folders == ["d", "d/sub"] and plan.copy == ["d/inner", "f"]
    kept = plan_mirror(source, target)
    assert kept.skipped == ["d", "d/sub", "d/inner", "f"] and kept.make_folders == []


def test_links_in_the_source_are_skipped_with_what_is_under_them() -> None:
    plan = plan_mirror(tree({"a": FileInfo(1, 1)}, others={"link"}), Tree(exists=False))
    assert plan.skipped == ["link"] and plan.copy == ["a"]


@pytest.mark.parametrize(
    "line", ['a "b c" d', "'*.c' x\\*y", 'e""f "" g\\ h "i\\"j"', "  lead  trail  ", "[ab]*?"]
)
def test_split_words_splits_as_shlex(line: str) -> None:
    assert split_words(line) == shlex.split(line)


def test_only_bare_wildcards_make_a_pattern() -> None:
    words = split_words("*.csv '*.csv' \\*.csv \"a*\"b* [x]")
    assert [w.pattern for w in words] == ["*.csv", None, None, "a[*]b*", "[x]"]
    with pytest.raises(ValueError, match="No closing quotation"):
        split_words('get "open')


def test_local_tree_hashes_each_regular_file_and_follows_no_link(tmp_path: Path) -> None:
    """``local_tree`` with digests: the same tree as without, every regular file hashed once."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "top.txt").write_bytes(b"top")
    (tmp_path / "a" / "b" / "deep.bin").write_bytes(bytes(range(256)) * 300)
    (tmp_path / "a" / "empty").write_bytes(b"")
    (tmp_path / "a" / "to-file").symlink_to("../top.txt")
    (tmp_path / "a" / "to-folder").symlink_to("b")
    os.mkfifo(tmp_path / "a" / "fifo")
    digests: dict[str, str] = {}
    tree = local_tree(str(tmp_path), digests)
    plain = local_tree(str(tmp_path))
    assert (tree.files, tree.folders, tree.others) == (plain.files, plain.folders, plain.others)
    assert set(tree.files) == {"top.txt", "a/b/deep.bin", "a/empty"}
    assert tree.folders == {"a", "a/b"}
    assert tree.others == {"a/to-file", "a/to-folder", "a/fifo"}
    size = tree.files["a/b/deep.bin"].size
    assert size == 256 * 300
    for relative in tree.files:
        expected = new_hasher()
        expected.update((tmp_path / relative).read_bytes())
        assert digests[relative] == expected.hexdigest(), relative
    assert local_tree(str(tmp_path / "missing")).exists is False


def test_local_tree_digests_files_of_every_size_with_one_reused_buffer(tmp_path: Path) -> None:
    """Big, small and empty files in any order: each digest is of that file's bytes only."""
    sizes = [3 * 1024 * 1024 + 5, 1, 70_000, 0, 1024 * 1024, 2048, 1024 * 1024 + 1, 17]
    for index, size in enumerate(sizes):
        folder = tmp_path / f"d{index % 3}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{index}").write_bytes(bytes([index + 1]) * size)
    digests: dict[str, str] = {}
    tree = local_tree(str(tmp_path), digests)
    assert len(tree.files) == len(digests) == len(sizes)
    for relative, info in tree.files.items():
        data = (tmp_path / relative).read_bytes()
        expected = new_hasher()
        expected.update(data)
        assert digests[relative] == expected.hexdigest(), relative
        assert info.size == len(data) and info.blake3 is None
