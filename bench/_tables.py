"""Markdown tables for the bench scripts' printed and written results (one helper for all of them)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def markdown_table(frame: pd.DataFrame, *, number_format: str | None = "{:.3f}") -> str:
    """A DataFrame as a GitHub markdown table.

    ``number_format`` formats float cells (e.g. ``"{:.3g}"`` keeps small p-values readable); ``None``
    writes every cell with ``str``.
    """
    def cell(value: object) -> str:
        if number_format is not None and isinstance(value, (float, np.floating)):
            return number_format.format(value)
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def results_folder(argv: list[str] | None, description: str | None):  # noqa: ANN201 - a pathlib.Path
    """The ``--out`` folder of a bench script without other options (default ``bench/results``), created."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                        help="folder for the result tables (default bench/results)")
    out = Path(parser.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_report(out_dir, name: str, lines: list[str], data: object = None) -> None:  # noqa: ANN001 - a Path
    """The tail every bench shares: ``<name>.md`` (the lines joined), ``<name>.json`` (``data``, when given; strict
    indent-1 JSON, numpy numbers as floats) and the report printed."""
    import json

    (out_dir / f"{name}.md").write_text("\n".join(lines))
    if data is not None:
        (out_dir / f"{name}.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    print("\n".join(lines))


def replace_section(path, header: str, lines: list[str], *, title: str = "# Peer benchmark"):  # noqa: ANN001, ANN201
    """Replace the section that starts with ``header`` in the markdown file ``path`` (or append it); the other
    sections stay. A missing file starts with ``title``."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text() if path.is_file() else title + "\n"
    head, _, tail = text.partition(header)
    rest = ""
    if tail:
        after = tail.split("\n## ", 1)
        rest = "## " + after[1] if len(after) > 1 else ""
    path.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + ("\n" + rest if rest else ""))
    return path
