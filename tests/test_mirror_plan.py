"""Unit tests of ``ftpclient.mirror.plan_mirror`` and ``ftpclient.globbing.split_words``."""

from __future__ import annotations

import os
import shlex
import threading
from pathlib import Path

import pytest

from ftpclient import localtree
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


def test_local_tree_gives_the_same_with_any_number_of_threads(tmp_path: Path) -> None:
    """Hashed by one thread or several: the same tree and digests, every file once."""
    for index in range(100):
        path = tmp_path / f"d{index % 7}" / f"f{index}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([index]) * (index * 131 + 1))
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 5000)  # over one read piece
    results = []
    for threads in (1, 3):
        digests: dict[str, str] = {}
        tree = local_tree(str(tmp_path), digests, threads=threads)
        results.append((tree.files, tree.folders, tree.others, digests))
    assert results[0] == results[1]
    files, _, _, digests = results[0]
    assert len(files) == len(digests) == 101
    expected = new_hasher()
    expected.update((tmp_path / "big.bin").read_bytes())
    assert digests["big.bin"] == expected.hexdigest() and files["big.bin"].size == 256 * 5000


def test_local_tree_raises_an_error_of_any_hashing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error in a helper thread is raised in the caller, after all stopped."""
    for index in range(64):
        (tmp_path / f"f{index:02}").write_bytes(b"x" * index)
    real = localtree._hashed

    def failing(path: str, buffer: memoryview) -> tuple[os.stat_result, str] | None:
        if path.endswith("f40"):
            raise RuntimeError("disk on fire")
        return real(path, buffer)

    monkeypatch.setattr(localtree, "_hashed", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        local_tree(str(tmp_path), {}, threads=4)
    assert not [t for t in threading.enumerate() if t.name == "mirror-hash"]
