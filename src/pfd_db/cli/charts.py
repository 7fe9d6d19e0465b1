"""Line charts in plain text, for curves shown in a terminal (no plotting library).

    for line in line_chart([0, 1, 2], {"train_loss": [0.9, 0.5, 0.3]}):
        print(line)

Each series gets a marker; epochs are spread over ``width`` columns (the mean of
the values that fall in a column), values over ``height`` rows between the
smallest and the largest; ``None`` values are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MARKERS = ("●", "○", "▲", "△")
OVERLAP = "◆"
LABEL_WIDTH = 10


def line_chart(
    epochs: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    *,
    height: int = 10,
    width: int = 60,
) -> list[str]:
    """The chart's lines: rows with their value labels, the epoch axis, a legend.
    An empty list when no series has a value."""
    columns = {name: _by_column(epochs, values, width) for name, values in series.items()}
    known = [v for values in columns.values() for v in values if v is not None]
    if not known:
        return []
    low, high = min(known), max(known)
    if high == low:
        low, high = low - 0.5, high + 0.5
    used = max(len(values) for values in columns.values())
    grid = [[" "] * used for _ in range(height)]
    for marker, values in zip(MARKERS, columns.values(), strict=False):
        for column, value in enumerate(values):
            if value is not None:
                row = round((high - value) / (high - low) * (height - 1))
                grid[row][column] = marker if grid[row][column] == " " else OVERLAP
    lines = [
        _label(row, height, low, high) + "┤" + "".join(cells) for row, cells in enumerate(grid)
    ]
    lines.append(" " * LABEL_WIDTH + "└" + "─" * used)
    lines.append(" " * (LABEL_WIDTH + 1) + _epoch_axis(epochs[0], epochs[-1], used))
    legend = "  ".join(f"{marker} {name}" for marker, name in zip(MARKERS, series, strict=False))
    lines.append(" " * (LABEL_WIDTH + 1) + legend)
    return lines


def _by_column(
    epochs: Sequence[int], values: Sequence[float | None], width: int
) -> list[float | None]:
    """``values`` spread over at most ``width`` columns, each the mean of its epochs' values."""
    count = len(values)
    columns = min(count, width)
    sums = [0.0] * columns
    seen = [0] * columns
    for index, value in enumerate(values):
        if value is not None:
            column = index * columns // count
            sums[column] += value
            seen[column] += 1
    return [total / n if n else None for total, n in zip(sums, seen, strict=True)]


def _epoch_axis(first: int, last: int, width: int) -> str:
    """``epoch FIRST`` at the left, ``LAST`` at the right end of ``width`` columns."""
    start = f"epoch {first}"
    if last == first:
        return start
    return start + " " * max(width - len(start) - len(str(last)), 1) + str(last)


def _label(row: int, height: int, low: float, high: float) -> str:
    """The value at the top, middle and bottom rows; blank elsewhere."""
    if row not in (0, height // 2, height - 1):
        return " " * LABEL_WIDTH
    value = high - (high - low) * row / (height - 1)
    return f"{value:.4g}".rjust(LABEL_WIDTH - 1) + " "
