"""Reading and writing the rows of a batch: CSV, Excel (.xlsx), JSON Lines and Parquet.

CSV and JSON Lines use the standard library (``csv`` keeps quoting and embedded
newlines, files are UTF-8 and a byte-order mark written by Excel is skipped);
Excel uses ``openpyxl``; Parquet needs ``pyarrow``. Files are written
atomically: to a temporary file next to the target, then renamed over it, so a
crash always leaves the previous complete file or the new one. The new file has
the mode of the one it replaces, or the umask's (0644 under umask 022) for a new one.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hush.batch.errors import TableError

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl", ".parquet": "parquet"}


def table_format(path: Path) -> str:
    """The format of ``path`` by its extension."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(FORMATS)
        raise TableError(f"{path}: unknown file type '{path.suffix}' (use one of {known})")
    return kind


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise :class:`TableError` unless ``path`` can be written as a table: a known type
    whose writer is installed, not a directory, in a directory that exists or can be made."""
    path = Path(path)
    kind = table_format(path)
    if kind == "parquet":
        _pyarrow(path)
    if path.is_dir():
        raise TableError(f"{path}: is a directory; name a file to write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise TableError(f"{path}: cannot write it: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TableError(f"{path}: cannot write it: {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise TableError(f"{path}: cannot write it: the file is read-only")


def read_table(
    path: str | os.PathLike[str], sheet: str | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns (in order) and rows of ``path``."""
    path = Path(path)
    kind = table_format(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if sheet is not None and kind != "xlsx":
        raise TableError(f"--sheet applies to .xlsx files, not {path.name}")
    try:
        if kind == "csv":
            return _read_csv(path)
        if kind == "xlsx":
            return _read_xlsx(path, sheet)
        if kind == "jsonl":
            return _read_jsonl(path)
        return _read_parquet(path)
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise TableError(f"{path}: cannot read it: {exc}") from None


def write_table(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    sheet: str | None = None,
) -> int:
    """Write ``rows`` (``columns`` in order) to ``path``, atomically; return how many.

    ``rows`` may be an iterator: CSV, JSON Lines and Excel are written a row at a time."""
    path = Path(path)
    kind = table_format(path)
    if kind == "parquet":
        _pyarrow(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        counted = _Counted(rows)
        with _replacing(path) as temporary:
            if kind == "csv":
                _write_csv(temporary, columns, counted)
            elif kind == "xlsx":
                _write_xlsx(temporary, columns, counted, sheet)
            elif kind == "jsonl":
                _write_jsonl(temporary, columns, counted)
            else:
                _write_parquet(temporary, columns, counted)
    except OSError as exc:
        raise TableError(f"{path}: cannot write it: {exc.strerror or exc}") from None
    except (ValueError, TypeError, ImportError) as exc:
        raise TableError(f"{path}: cannot write it: {exc}") from None
    return counted.count


class _Counted:
    """Rows passed through once, counted."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for row in self.rows:
            self.count += 1
            yield row


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file next to ``path`` that becomes ``path`` when the block succeeds and
    is removed when it fails: the one outcome of every write."""
    try:
        mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        if mode is not None:
            os.chmod(temporary, mode)
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TableError(f"{path}: the file is empty (it needs a header row)")
        columns = _columns(path, header)
        rows = []
        for number, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) > len(columns):
                raise TableError(
                    f"{path}: row {number} has {len(values)} values for {len(columns)} columns"
                )
            values += [""] * (len(columns) - len(values))
            rows.append(dict(zip(columns, values, strict=True)))
    return columns, rows


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


def _read_jsonl(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    columns: dict[str, None] = {}
    rows = []
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TableError(f"{path}: line {number} is not a JSON object")
            columns.update(dict.fromkeys(row))
            rows.append(row)
    return list(columns), rows


def _write_jsonl(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            record = {c: row.get(c) for c in columns}
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _read_xlsx(path: Path, sheet: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            names = ", ".join(workbook.sheetnames)
            raise TableError(f"{path}: no sheet '{sheet}' (its sheets: {names})")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        lines = worksheet.iter_rows(values_only=True)
        header = next(lines, None)
        if header is None:
            raise TableError(f"{path}: the sheet is empty (it needs a header row)")
        columns = _columns(path, ["" if v is None else str(v) for v in header])
        rows = []
        for values in lines:
            if values is None or all(v is None for v in values):
                continue
            padded = list(values[: len(columns)]) + [None] * (len(columns) - len(values))
            rows.append(dict(zip(columns, padded, strict=True)))
    finally:
        workbook.close()
    return columns, rows


def _write_xlsx(
    path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]], sheet: str | None
) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(title=sheet or "Sheet1")
    worksheet.append([_cell(worksheet, c) for c in columns])
    for row in rows:
        worksheet.append([_cell(worksheet, row.get(c)) for c in columns])
    workbook.save(path)


def _cell(worksheet: Any, value: Any) -> Any:
    """A cell holding ``value`` as data: text is never read as a formula, and
    control characters Excel refuses are dropped."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if value is None or isinstance(value, int | float | bool | datetime.date | datetime.time):
        return value
    if isinstance(value, dict | list | tuple):
        value = json.dumps(value, ensure_ascii=False, default=str)
    elif not isinstance(value, str):
        value = str(value)
    cell = WriteOnlyCell(worksheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
    cell.data_type = "s"
    return cell


def _read_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    pq = _pyarrow(path)
    table = pq.read_table(path)
    return list(table.column_names), table.to_pylist()


def _write_parquet(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    import pyarrow
    import pyarrow.parquet as pq

    table = pyarrow.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    pq.write_table(table, path)


def _pyarrow(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TableError(f"{path}: Parquet files need pyarrow (pip install pyarrow)") from None
    return pq


def _columns(path: Path, header: Sequence[str]) -> list[str]:
    columns = [str(c).strip() for c in header]
    seen: set[str] = set()
    for index, name in enumerate(columns):
        if not name:
            raise TableError(f"{path}: column {index + 1} of the header has no name")
        if name in seen:
            raise TableError(f"{path}: column '{name}' appears twice in the header")
        seen.add(name)
    return columns
