"""The output of a Ray scoring run: part files committed atomically, read back with each id once.

Every batch an actor scores becomes one Parquet *part file* in the parts folder beside the output
(``.<output name>.parts/``). A part is written under a temporary name and then moved to its final
name, ``part-<sha1 of its image ids>.parquet``, so a reader never sees half a part: a killed
writer leaves at most a ``.tmp-*`` file, which readers ignore and a resumed run deletes. Ray
retries failed tasks and restarts dead actors, so a batch can be scored twice; its part then has
the same name and the same rows (moved over the first), and an id that lands in two different
parts (a retry that batched differently) is kept once when the parts are read
(:func:`dedupe`). The parts are the durable record: ``--resume`` reads the ids they hold and
scores only the rest; at the end of a run they are merged, deduplicated and in input order, into
the output file (again through a temporary file and a move) and removed.

Parts carry two internal columns, ``_unit`` and ``_item`` (the position of the row's input), that
order the merged output; the output itself has exactly the columns of ``artquant score``.

Paths are local paths or URIs of any filesystem pyarrow knows (``s3://``, ``gs://``,
``abfs://``, ``hdfs://``); on object storage the move is a copy and a delete, and an object
appears only once its upload is complete, which is what atomic means there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from artquant_sdk._output import OutputFormatError, columns_for

__all__ = [
    "ORDER_COLUMNS",
    "Location",
    "MergeResult",
    "commit_part",
    "dedupe",
    "is_uri",
    "list_parts",
    "merge_parts",
    "output_schema",
    "part_name",
    "parts_location",
    "read_done_ids",
    "read_parts",
    "read_previous_output",
    "remove_parts",
    "remove_temporary",
    "rows_to_table",
]

logger = logging.getLogger(__name__)

ORDER_COLUMNS = ("_unit", "_item")
_PART_PREFIX = "part-"
_TMP_PREFIX = ".tmp-"
_SUFFIX = ".parquet"


def is_uri(location: str) -> bool:
    """Whether ``location`` names a filesystem by scheme (``s3://...``) rather than a local path.

    Example:
        >>> is_uri("s3://bucket/x.parquet"), is_uri("out/x.parquet")
        (True, False)
    """
    return "://" in location


@dataclass(frozen=True)
class Location:
    """A file or folder on a pyarrow filesystem: local (absolute path) or object storage."""

    fs: pafs.FileSystem
    path: str

    @classmethod
    def of(cls, location: str | os.PathLike[str]) -> Location:
        """Resolve a local path or a URI.

        Example:
            >>> Location.of("/tmp/out.parquet").path
            '/tmp/out.parquet'
        """
        text = os.fspath(location)
        if is_uri(text):
            fs, path = pafs.FileSystem.from_uri(text)
            return cls(fs, path)
        return cls(pafs.LocalFileSystem(), os.path.abspath(text))

    def child(self, name: str) -> Location:
        """``name`` inside this folder."""
        return Location(self.fs, posixpath.join(self.path, name))

    @property
    def name(self) -> str:
        """The last component."""
        return posixpath.basename(self.path.rstrip("/"))

    def exists(self) -> bool:
        """Whether a file or folder is there."""
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        """Whether a folder is there."""
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory


def parts_location(output: Location) -> Location:
    """The parts folder of an output file: ``.<name>.parts`` beside it.

    Example:
        >>> parts_location(Location.of("/data/scores.parquet")).path
        '/data/.scores.parquet.parts'
    """
    parent = posixpath.dirname(output.path.rstrip("/"))
    return Location(output.fs, posixpath.join(parent, f".{output.name}.parts"))


def output_schema(words: Sequence[str], attributes: Sequence[str] = ()) -> pa.Schema:
    """The Parquet schema of the output: the columns of ``artquant score`` (:func:`columns_for`).

    Example:
        >>> output_schema(["good", "bad"]).names
        ['image', 'score', 'std', 'level', 'p_good', 'p_bad', 'error']
    """
    types = {"image": pa.string(), "level": pa.string(), "error": pa.string()}
    return pa.schema([(c, types.get(c, pa.float64())) for c in columns_for(words, attributes)])


def _part_schema(words: Sequence[str], attributes: Sequence[str] = ()) -> pa.Schema:
    schema = output_schema(words, attributes)
    for column in ORDER_COLUMNS:
        schema = schema.append(pa.field(column, pa.int64()))
    return schema


def rows_to_table(
    rows: Sequence[Mapping[str, object]],
    words: Sequence[str],
    units: Sequence[int],
    items: Sequence[int],
    attributes: Sequence[str] = (),
) -> pa.Table:
    """One part's table: ``rows`` (as ``artquant score`` writes them) with their positions.

    Args:
        rows: Row dicts; a failed row has only ``image`` and ``error``.
        words: The level words (the ``p_`` columns).
        units: Each row's input unit (see the module docstring).
        items: Each row's position inside its unit.
        attributes: The attribute ids asked for (the ``score_``/``std_`` columns).

    Raises:
        OutputFormatError: A row has a column the output does not have.
    """
    schema = _part_schema(words, attributes)
    allowed = set(schema.names)
    for row in rows:
        unknown = set(row) - allowed
        if unknown:
            raise OutputFormatError(f"row has columns {sorted(unknown)} not in {schema.names}")
    columns = columns_for(words, attributes)
    data: dict[str, list[object]] = {c: [r.get(c) for r in rows] for c in columns}
    data["_unit"] = list(units)
    data["_item"] = list(items)
    return pa.Table.from_pydict(data, schema=schema)


def part_name(ids: Iterable[str]) -> str:
    """The final name of the part holding ``ids``: the same batch always gets the same name.

    Example:
        >>> part_name(["a.png", "b.png"]) == part_name(["a.png", "b.png"])
        True
    """
    digest = hashlib.sha1("\n".join(ids).encode("utf-8")).hexdigest()
    return f"{_PART_PREFIX}{digest}{_SUFFIX}"


def _write_atomically(table: pa.Table, target: Location) -> None:
    """Write ``table`` to a temporary name beside ``target``, then move it onto ``target``."""
    folder = posixpath.dirname(target.path)
    temporary = posixpath.join(folder, f"{_TMP_PREFIX}{uuid.uuid4().hex}{_SUFFIX}")
    pq.write_table(table, temporary, filesystem=target.fs)
    try:
        target.fs.move(temporary, target.path)
    except Exception:
        target.fs.delete_file(temporary)
        raise


def commit_part(parts: Location, table: pa.Table) -> str:
    """Write one part atomically (temporary file, then a move); returns its name.

    Args:
        parts: The parts folder (created when missing).
        table: From :func:`rows_to_table`.
    """
    parts.fs.create_dir(parts.path, recursive=True)
    name = part_name(table.column("image").to_pylist())
    _write_atomically(table, parts.child(name))
    return name


def _listing(parts: Location) -> list[pafs.FileInfo]:
    if not parts.is_dir():
        return []
    return parts.fs.get_file_info(pafs.FileSelector(parts.path, recursive=False))


def list_parts(parts: Location) -> list[str]:
    """The committed parts' paths, sorted (temporary files excluded)."""
    return sorted(
        info.path
        for info in _listing(parts)
        if info.base_name.startswith(_PART_PREFIX) and info.base_name.endswith(_SUFFIX)
    )


def remove_temporary(parts: Location) -> int:
    """Delete the temporary files killed writers left; returns how many."""
    leftovers = [i.path for i in _listing(parts) if i.base_name.startswith(_TMP_PREFIX)]
    for path in leftovers:
        parts.fs.delete_file(path)
    return len(leftovers)


def _read_table(path: str, fs: pafs.FileSystem, schema: pa.Schema) -> pa.Table:
    table = pq.read_table(path, filesystem=fs)
    if table.schema.names != schema.names:
        raise OutputFormatError(
            f"{path} has columns {table.schema.names}, this run writes {schema.names}: it was "
            "written by another model or tool; use another output (or overwrite)"
        )
    return table.cast(schema)


def read_parts(parts: Location, words: Sequence[str], attributes: Sequence[str] = ()) -> pa.Table:
    """Every committed part, concatenated in part-name order, with a ``_part`` index column.

    Raises:
        OutputFormatError: A part has other columns (another model's level words).
    """
    schema = _part_schema(words, attributes)
    tables = [
        _with_index(_read_table(path, parts.fs, schema), index)
        for index, path in enumerate(list_parts(parts))
    ]
    if not tables:
        return schema.append(pa.field("_part", pa.int64())).empty_table()
    return pa.concat_tables(tables)


def _with_index(table: pa.Table, index: int) -> pa.Table:
    return table.append_column("_part", pa.array(np.full(table.num_rows, index), pa.int64()))


def dedupe(table: pa.Table) -> pa.Table:
    """One row per ``image``: a scored row before an error row, then the earliest part and row.

    A batch scored twice (a retried task) gives the same id twice; which copy is kept is
    deterministic. Columns ``_part`` (and order columns) are kept for the caller.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.table({"image": ["a", "a", "b"], "error": ["boom", None, None],
        ...               "_part": [0, 1, 1]})
        >>> dedupe(t).to_pydict()
        {'image': ['a', 'b'], 'error': [None, None], '_part': [1, 1]}
    """
    if table.num_rows == 0:
        return table
    failed = pc.is_valid(table.column("error")).cast(pa.int8())
    keyed = table.append_column("_failed", failed).append_column(
        "_row", pa.array(np.arange(table.num_rows), pa.int64())
    )
    keyed = keyed.sort_by(
        [("image", "ascending"), ("_failed", "ascending"), ("_part", "ascending"),
         ("_row", "ascending")]
    )  # fmt: skip
    images = keyed.column("image").combine_chunks()
    first = np.ones(keyed.num_rows, dtype=bool)
    if keyed.num_rows > 1:
        first[1:] = np.asarray(
            pc.not_equal(images.slice(1), images.slice(0, keyed.num_rows - 1)).to_numpy(
                zero_copy_only=False
            )
        )
    return keyed.filter(pa.array(first)).drop_columns(["_failed", "_row"])


def read_previous_output(
    output: Location, words: Sequence[str], attributes: Sequence[str] = ()
) -> pa.Table:
    """The rows of an existing output file (none when it is missing).

    Raises:
        OutputFormatError: It has other columns (another model's level words, another tool).
    """
    if not output.exists():
        return output_schema(words, attributes).empty_table()
    return _read_table(output.path, output.fs, output_schema(words, attributes))


def read_done_ids(
    output: Location, parts: Location, words: Sequence[str], attributes: Sequence[str] = ()
) -> set[str]:
    """Ids that already have a row, in the output file or in committed parts (for resuming).

    Rows with an ``error`` count as done, as in ``artquant score --resume``.
    """
    done = set(read_previous_output(output, words, attributes).column("image").to_pylist())
    done.update(read_parts(parts, words, attributes).column("image").to_pylist())
    return done


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_parts` wrote: row counts and the expected ids without a row."""

    rows: int
    scored: int
    errors: int
    missing: list[str]


OrderKeys = Callable[[Sequence[str]], tuple[Sequence[int], Sequence[int]]]


def merge_parts(
    output: Location,
    parts: Location,
    words: Sequence[str],
    *,
    previous: bool,
    order_of_previous: OrderKeys,
    expected: Iterable[str],
    attributes: Sequence[str] = (),
) -> MergeResult:
    """Write the output file from the parts (and the previous output): each id once, in order.

    The rows of the previous output (``previous=True``, a resumed run) keep their ids; the caller
    gives their order keys (``order_of_previous(ids) -> (units, items)``). Rows are sorted by
    ``(_unit, _item)`` and written atomically; the parts are kept: :func:`remove_parts` removes
    them once the caller is satisfied.

    Args:
        output: The output file.
        parts: The parts folder.
        words: The level words.
        previous: Merge the existing output's rows too.
        order_of_previous: Order keys for the previous output's ids.
        expected: Ids that must have a row; those without one are reported in ``missing``.
        attributes: The attribute ids asked for (their columns).

    Returns:
        The counts and the missing ids (in ``expected`` order).
    """
    table = read_parts(parts, words, attributes)
    if previous:
        old = read_previous_output(output, words, attributes)
        if old.num_rows:
            ids = old.column("image").to_pylist()
            units, items = order_of_previous(ids)
            old = (
                old.append_column("_unit", pa.array(units, pa.int64()))
                .append_column("_item", pa.array(items, pa.int64()))
                .append_column("_part", pa.array(np.full(old.num_rows, -1), pa.int64()))
            )
            table = pa.concat_tables([old, table])
    merged = dedupe(table).sort_by([("_unit", "ascending"), ("_item", "ascending")])
    final = merged.select(output_schema(words, attributes).names)
    output.fs.create_dir(posixpath.dirname(output.path), recursive=True)
    _write_atomically(final, output)
    present = set(final.column("image").to_pylist())
    errors = int(pc.sum(pc.is_valid(final.column("error"))).as_py() or 0)
    return MergeResult(
        rows=final.num_rows,
        scored=final.num_rows - errors,
        errors=errors,
        missing=[i for i in expected if i not in present],
    )


def remove_parts(parts: Location) -> None:
    """Delete the parts folder and everything in it."""
    if parts.is_dir():
        parts.fs.delete_dir(parts.path)
