"""Listings (`models`, `history`, `config`, `index search`) for a person, a pipe and a script.

    show_table(Console(), ["id", "started"], [["1", "2025-01-02T10:00:00+01:00"]])
    print_json([{"id": 1}])

On a terminal a listing is a rich table that wraps cells but never cuts one (no "…": a cut name could be either
of two presets). Piped, it is one tab-separated line per row, header-less and whole, as `gh` prints its tables,
so `cut -f1` and `grep` work; `--json` is the stable shape for scripts (README: Use).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table


def show_table(console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]], keys: int = 1) -> None:
    """Print rows as a table on a terminal (the first `keys` columns never wrap, no cell is cut), else as TSV."""
    if not console.is_terminal:
        for row in rows:
            typer.echo("\t".join(" ".join(cell.split()) for cell in row))  # a tab or newline in a cell would split it
        return
    table = Table()
    for i, header in enumerate(headers):
        # min_width: rich shrinks no column below it, so a key column keeps its longest cell whole
        widest = max((len(row[i]) for row in rows), default=0) if i < keys else None
        table.add_column(header, no_wrap=i < keys, min_width=widest, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_json(data: Any) -> None:
    """One JSON document on stdout, for `json.loads`."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
