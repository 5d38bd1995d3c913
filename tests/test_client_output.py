"""The client's screen pieces without a server: the progress bar line, columns, ls order."""

from __future__ import annotations

import io

import pytest

from ftpclient.client import Entry
from ftpclient.output import ListStyle, format_columns
from ftpclient.progress import CLEAR, ProgressBar, format_bar

MIB = 1024 * 1024


@pytest.mark.parametrize("width", [20, 60, 80, 200])
def test_bar_fits_the_width_and_uses_binary_units(width: int) -> None:
    line = format_bar("big.bin", 3 * MIB // 2, 3 * MIB, 2 * MIB, width)
    assert len(line) < width
    if width >= 80:
        assert line.startswith("big.bin:  50%|")
        assert line.endswith("| 1.5 MiB/3.0 MiB, 2.0 MiB/s, 0:00 left")


def test_bar_appears_after_a_second_and_is_erased_at_the_end() -> None:
    now = [0.0]
    screen = io.StringIO()
    bar = ProgressBar("f", screen, clock=lambda: now[0])
    bar.start(10 * MIB, 0)
    bar.update(MIB)
    assert screen.getvalue() == "", "drawn before a second went by"
    now[0] = 1.5
    bar.update(MIB)
    assert "f:  20%|" in screen.getvalue()
    bar.close()
    assert screen.getvalue().endswith(CLEAR), "the bar was left on screen"


def test_columns_fill_top_to_bottom() -> None:
    names = ["a", "bb", "c", "dd", "e"]
    assert format_columns(names, 12) == ["a   c   e", "bb  dd"]
    assert format_columns(names, 3) == names
    assert format_columns([], 80) == []


def test_ls_order_and_dot_files() -> None:
    entries = [Entry(".h", "file", 1, 5), Entry("b", "file", 30, 1), Entry("a", "dir", 0, 9)]

    def names(style: ListStyle) -> list[str]:
        return [e.name for e in style.arrange(entries)]

    assert names(ListStyle()) == ["a", "b"]
    assert names(ListStyle(hidden=True)) == [".h", "a", "b"]
    assert names(ListStyle(by_time=True)) == ["a", "b"]
    assert names(ListStyle(by_size=True, hidden=True)) == ["b", ".h", "a"]
    assert names(ListStyle(reverse=True)) == ["b", "a"]
