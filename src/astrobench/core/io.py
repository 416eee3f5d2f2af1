"""Atomic writes, the cache folder and the errors a user can cause.

A user error (bad input file, unknown option) raises an :class:`AstrobenchError` subclass; the command
line turns it into one line on stderr and exit code 2. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class AstrobenchError(Exception):
    """An error caused by the user's input; shown as one line, exit code 2."""


class DataFormatError(AstrobenchError):
    """An input file is missing, corrupt or does not follow the task's real format."""

    def __init__(self, path: str | os.PathLike, problem: str):
        """``path``: the file at fault; ``problem``: what is wrong with it (the message is ``PATH: PROBLEM``)."""
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # raised in a worker process, it must survive pickling back to the parent
        """Rebuild from (path, problem) when unpickled, so the error survives the trip back from a worker."""
        return (type(self), (self.path, self.problem))


class ConfigError(AstrobenchError):
    """An unknown task, option or option value."""


def bad_option(options: dict, key: str, expected: str) -> ConfigError:
    """The error for an option value a task cannot use: ``option KEY must be EXPECTED, got VALUE`` (raise it)."""
    return ConfigError(f"option {key} must be {expected}, got {options[key]!r}")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def check_memory(what: str, n_bytes: float, fraction: float = 0.8) -> None:
    """Refuse up front (ConfigError with the estimate) what would need more than ``fraction`` of the memory this
    machine has available, instead of failing later with a MemoryError or being killed."""
    import psutil

    available = psutil.virtual_memory().available
    if n_bytes > fraction * available:
        raise ConfigError(f"{what} needs about {_gib(n_bytes)} of memory; this machine has {_gib(available)} "
                          "available: choose a smaller size")


def current_umask() -> int:
    """The process's umask (read from /proc where there is one: setting and restoring it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A killed process leaves at most a stray temporary file, never a half-written ``path``. In a rank of a
    multi-process run that does not own the run folder (``astrobench.core.distributed``), a ``path`` inside that
    folder is never written: the block writes a scratch file that is then deleted.
    """
    from astrobench.core.distributed import owned_elsewhere

    path = Path(path)
    if owned_elsewhere(path):
        scratch = Path(tempfile.mkdtemp(prefix="astrobench-not-owner-"))
        try:
            yield scratch / path.name
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes it private (0600): give it a normal file's mode
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_predictions(columns: Mapping[str, Sequence | np.ndarray], out: str | os.PathLike,
                      formats: str | Mapping[str, str] = ".5g") -> Path:
    """Write a predictions table: a CSV file with one column per key of ``columns`` (all of one length), in order.

    Integers (Python or numpy) and strings are written as they are; other numbers with the format spec ``formats``
    (one for every column, or per column name, default ``.5g``; a column missing from the mapping gets ``.5g``).
    The file appears at ``out`` only when complete; returns ``out``."""
    import csv

    names = list(columns)
    lengths = {name: len(columns[name]) for name in names}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"write_predictions: columns of different lengths {lengths}")
    spec = {name: formats if isinstance(formats, str) else formats.get(name, ".5g") for name in names}

    def cell(name: str, value: Any) -> Any:
        if isinstance(value, (str, bool, np.bool_)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        return format(value, spec[name])

    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for row in zip(*(columns[name] for name in names)):
            writer.writerow([cell(name, v) for name, v in zip(names, row)])
    return out


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 through :func:`atomic_path`: never a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite_or_null(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON has no such numbers."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented JSON, atomically; numpy values and paths are converted,
    NaN and infinities become null."""
    text = json.dumps(_finite_or_null(obj), indent=2, default=_json_default, allow_nan=False)
    write_text_atomic(path, text + "\n")


def write_pickle_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` (parent folders made), never leaving a half-written file."""
    import pickle

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f)


def read_json(path: str | os.PathLike) -> Any:
    """The parsed content of the JSON file ``path``; a DataFormatError when it is missing or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(path, f"not valid JSON ({err})") from None


def is_number(value) -> bool:
    """True when ``float(value)`` succeeds: a number, or text such as ``"1e3"`` or ``"nan"``."""
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def numeric_column(path: str | os.PathLike, name: str, values: np.ndarray) -> np.ndarray:
    """``values`` as float; a DataFormatError naming the first entry that is not a number when the column is text."""
    if values.dtype.kind not in "iuf":
        bad = next((v for v in values if not is_number(v)), values[0] if len(values) else "")
        raise DataFormatError(path, f"column {name} must be numeric, got text such as {str(bad)!r}")
    return values.astype(float)


def check_readable_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a regular file with something in it; else a DataFormatError that says what it is
    (missing, a folder, a link that loops or leads nowhere, empty)."""
    path = Path(path)
    try:
        path.stat()
    except OSError as err:
        if path.is_symlink():
            raise DataFormatError(path, "a symbolic link that loops or leads nowhere") from None
        raise DataFormatError(path, "file not found" if isinstance(err, FileNotFoundError)
                              else f"cannot be read ({err.strerror})") from None
    if path.is_dir():
        raise DataFormatError(path, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "is empty (0 bytes)")
    return path


def _split_text_table(text: str, comment: str = "#") -> tuple[str | None, list[str], list[tuple[int, list[str]]]]:
    """(delimiter, header names, [(line number, fields)] of the data lines) of a text table with one header line.

    The delimiter is ',' or ';' or a tab when the header holds one, else None (whitespace). Blank lines and lines
    starting with ``comment`` are skipped, except a commented header as the first line (``# id ra dec ...``)."""
    import csv

    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not numbered:
        return None, [], []
    header = numbered[0][1].lstrip()
    if header.startswith(comment):
        header = header[len(comment):].lstrip(" ,;\t")
    delimiter = next((d for d in (",", ";", "\t") if d in header), None)

    def fields(line: str) -> list[str]:
        return next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split()

    rows = [(i, fields(line)) for i, line in numbered[1:] if not line.lstrip().startswith(comment)]
    return delimiter, [n.strip() for n in fields(header)], rows


def check_text_table(path: str | os.PathLike, comment: str = "#") -> tuple[str, str | None]:
    """Check a text table with one header line before any parser sees it; return (text, delimiter).

    The text is decoded as UTF-8 (a byte-order mark is dropped); the delimiter is found as :func:`_split_text_table`
    says. Refused with the problem named: an empty or binary file, an empty or repeated column name, and any line
    whose number of fields differs from the header's (a file cut off mid-row, a stray separator, a second header)."""
    path = check_readable_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}): a binary "
                              "file, or text in another encoding") from None
    delimiter, names, rows = _split_text_table(text, comment)
    if not names:
        raise DataFormatError(path, "holds only blank lines")
    seen: set[str] = set()
    for name in names:
        if not name:
            raise DataFormatError(path, "the header has an empty column name")
        if name in seen:
            raise DataFormatError(path, f"column name {name!r} appears more than once in the header")
        seen.add(name)
    if not rows:
        raise DataFormatError(path, "has a header but no rows")
    for number, row in rows:
        if [f.strip() for f in row] == names:
            raise DataFormatError(path, f"line {number} repeats the header")
        if len(row) != len(names):
            if number == rows[-1][0] and not text.endswith(("\n", "\r")):
                raise DataFormatError(path, f"line {number}, the last, has {len(row)} of the header's {len(names)} "
                                      "fields and no line end: the file looks cut off")
            raise DataFormatError(path, f"line {number} has {len(row)} fields, the header {len(names)}")
    return text, delimiter


def check_numeric_cells(path: str | os.PathLike, text: str, columns: dict[str, np.ndarray],
                        comment: str = "#") -> None:
    """Every cell of a column a parser read as numbers must be a number or empty: some parsers turn a cell such as
    ``NaNx`` or ``0x1F`` into a missing value, which would drop its row without a word. Names the first such cell.
    ``text`` is what :func:`check_text_table` returned."""
    _, names, rows = _split_text_table(text, comment)
    wanted = [(k, name) for k, name in enumerate(names) if name in columns and columns[name].dtype.kind == "f"]
    for number, cells in rows:
        for k, name in wanted:
            cell = cells[k].strip()
            if cell and not is_number(cell):
                raise DataFormatError(path, f"line {number}, column {name}: {cell!r} is not a number (leave the cell "
                                      "empty, or write nan, for a missing value)")


def table_columns(table) -> dict[str, np.ndarray]:
    """The columns of an astropy Table as plain arrays; empty (masked) cells become NaN in numeric columns and ''
    in text ones, never the masked column's fill value."""
    out = {}
    for name in table.colnames:
        column = table[name]
        if getattr(column, "mask", None) is not None and np.any(column.mask):
            column = column.astype(float).filled(np.nan) if column.dtype.kind in "iuf" else column.filled("")
        out[name] = np.asarray(column)
    return out


def cache_dir() -> Path:
    """The simulation cache: ``$ASTROBENCH_CACHE``, else ``$XDG_CACHE_HOME/astrobench``, else ``~/.cache``."""
    root = os.environ.get("ASTROBENCH_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "astrobench"


def config_key(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """A run folder's config.json, checked to be a run configuration."""
    config = read_json(Path(run_dir) / "config.json")
    if not isinstance(config, dict) or "task" not in config or "options" not in config:
        raise DataFormatError(Path(run_dir) / "config.json", "not an astrobench run configuration")
    return config
