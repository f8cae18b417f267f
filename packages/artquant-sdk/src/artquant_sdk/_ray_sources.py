"""What a Ray scoring run reads: sources expanded into units, and units read into images.

A *source* is what the user names:

* a folder (local, or a URI such as ``s3://bucket/pictures/``): its image files, as
  ``artquant score`` takes them (image extensions, no hidden files, sorted; ``recursive`` for
  sub-folders);
* a glob (``pictures/*.jpg``, ``s3://bucket/shards/*.tar``): every match, sorted;
* a file: by its extension, a Parquet (``.parquet``, ``.pq``) or CSV (``.csv``) *manifest*, a
  *tar shard* (``.tar``, ``.tar.gz``, ``.tgz``: WebDataset-style, one image per member), or else
  an image file (scored whatever its extension; an unreadable one gets an error row).

A source expands into *units*, each a piece of work one CPU task reads:

* ``file``: one image file; its id is the path as given (a folder's files joined onto it).
* ``rows``: one row group of a Parquet manifest with a bytes column; ids from the id column, else
  ``<manifest>#<row>``. A manifest with a path column instead becomes ``file`` units (paths
  relative to the manifest's folder; ids from the id column, else the path as written). CSV
  manifests hold paths only.
* ``tar``: one shard; each member with an image extension is one image, id ``<shard>#<member>``.
  Members are only known once the shard is read.

Reading a unit (:func:`read_unit`) yields ``(id, item, source, error)`` per image, where
``source`` is a local path or the encoded bytes; a file, row or shard that cannot be read becomes
an error instead of an exception, so one bad input never stops a run.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import logging
import os
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from artquant_sdk._decode import describe_error
from artquant_sdk._files import IMAGE_EXTENSIONS, expand_paths
from artquant_sdk._ray_store import is_uri

__all__ = [
    "ManifestColumns",
    "Unit",
    "apply_resume",
    "expand_sources",
    "order_keys",
    "read_unit",
    "units_table",
]

logger = logging.getLogger(__name__)

UnitKind = Literal["file", "rows", "tar"]
_T = TypeVar("_T")
_MANIFESTS = (".parquet", ".pq", ".csv")
_TARS = (".tar", ".tar.gz", ".tgz")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ManifestColumns:
    """Which manifest columns hold the picture and its id.

    Attributes:
        path: The column of file paths or URIs (tried first).
        bytes: The column of encoded image bytes (Parquet only).
        id: The column of ids; None: the path, or ``<manifest>#<row>`` for bytes.
    """

    path: str = "path"
    bytes: str = "bytes"
    id: str | None = None


@dataclass
class Unit:
    """One piece of reading work (see the module docstring).

    Attributes:
        kind: ``file``, ``rows`` or ``tar``.
        location: The file, manifest or shard (local path or URI).
        unit: Its position among all units: the output is ordered by ``(unit, item)``.
        image_id: For ``file``: the image id; else the container's id (the source as named).
        row_group: For ``rows``: the Parquet row group.
        ids: For ``rows``: the ids of the row group, in row order (known before reading).
        skip: Ids already done (a resumed run), not to be read again.
    """

    kind: UnitKind
    location: str
    unit: int
    image_id: str
    row_group: int = -1
    ids: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)

    def expected_ids(self) -> list[str] | None:
        """The ids this unit yields, or None where they are known only after reading (tar)."""
        if self.kind == "file":
            return [self.image_id]
        if self.kind == "rows":
            return self.ids
        return None


def _has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _kind_of(name: str) -> Literal["manifest", "tar", "image"]:
    lower = name.lower()
    if lower.endswith(_MANIFESTS):
        return "manifest"
    if lower.endswith(_TARS):
        return "tar"
    return "image"


def _uri_of(path: str, source: str, source_path: str) -> str:
    """``path``, found under the URI ``source`` (whose filesystem path is ``source_path``), as
    a URI: the source's scheme, host and query around it.

    Example:
        >>> _uri_of("b/pics/x.jpg", "s3://b/pics?region=eu", "b/pics")
        's3://b/pics/x.jpg?region=eu'
        >>> _uri_of("/data/x.jpg", "hdfs://nn:8020/data", "/data")
        'hdfs://nn:8020/data/x.jpg'
    """
    base, mark, query = source.partition("?")
    base, root = base.rstrip("/"), source_path.rstrip("/")
    if not base.endswith(root):  # pyarrow mapped the URI to a path it does not end with
        raise ValueError(f"cannot rebuild a URI for {path!r} from {source!r}")
    return f"{base[: len(base) - len(root)]}{path}{mark}{query}"


def _list_uri_folder(fs: pafs.FileSystem, path: str, recursive: bool) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
    found = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = posixpath.relpath(info.path, path)
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        if posixpath.splitext(info.base_name)[1].lower() in IMAGE_EXTENSIONS:
            found.append(info.path)
    return sorted(found, key=lambda p: posixpath.relpath(p, path).split("/"))


def _glob_uri(fs: pafs.FileSystem, pattern: str) -> list[str]:
    """Matches of a glob on a pyarrow filesystem (``*`` within a component, ``**`` across)."""
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if _has_glob(part):
            break
        fixed.append(part)
    root = "/".join(fixed) or "/"
    recursive = len(fixed) < len(parts) - 1 or "**" in pattern
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=recursive, allow_not_found=True))
    matcher = re.compile(fnmatch.translate(pattern.replace("**/", "*").replace("**", "*")))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and matcher.match(i.path))


def _resolve_path(value: str, manifest: str) -> str:
    """A manifest's path value: URIs and absolute paths as they are, others beside the manifest."""
    if is_uri(value) or os.path.isabs(value):
        return value
    if is_uri(manifest):
        scheme, rest = manifest.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), value))}"
    return os.path.join(os.path.dirname(manifest), value)


@functools.lru_cache(maxsize=256)
def _folder_filesystem(folder: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(folder)


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a local path or URI.

    Filesystems are cached per folder (with the URI's query, e.g. ``?endpoint_override=``):
    building one for a bucket can cost a network round trip, which a run reading millions of
    files from a few folders should pay a few times, not once per file.

    Example:
        >>> fs, path = resolve("file:///tmp/pics/a.png")
        >>> type(fs).__name__, path
        ('LocalFileSystem', '/tmp/pics/a.png')
    """
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(location)
    base, mark, query = location.partition("?")
    folder, _, name = base.rpartition("/")
    if not name or folder.endswith(":/"):  # a bucket or root itself: nothing to share
        return pafs.FileSystem.from_uri(location)
    fs, path = _folder_filesystem(folder + mark + query)
    return fs, f"{path.rstrip('/')}/{name}"


def _manifest_units(location: str, columns: ManifestColumns, first_unit: int) -> list[Unit]:
    fs, path = resolve(location)
    is_csv = location.lower().endswith(".csv")
    if is_csv:
        with fs.open_input_stream(path) as stream:
            table = pacsv.read_csv(stream)
        names = table.schema.names
        row_groups = None
    else:
        parquet = pq.ParquetFile(path, filesystem=fs)
        names = parquet.schema_arrow.names
        row_groups = parquet.num_row_groups
    if columns.id is not None and columns.id not in names:
        raise ValueError(f"manifest {location!r} has no id column {columns.id!r}; it has {names}")
    if columns.path in names:
        wanted = [columns.path] + ([columns.id] if columns.id else [])
        if not is_csv:
            table = parquet.read(columns=wanted)
        paths = [str(v) for v in table.column(columns.path).to_pylist()]
        ids = [str(v) for v in table.column(columns.id).to_pylist()] if columns.id else paths
        return [
            Unit("file", _resolve_path(p, location), first_unit + i, image_id)
            for i, (p, image_id) in enumerate(zip(paths, ids, strict=True))
        ]
    if columns.bytes in names and not is_csv:
        assert row_groups is not None  # set for Parquet above
        units = []
        offset = 0
        for group in range(row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if columns.id:
                column = parquet.read_row_group(group, [columns.id]).column(0)
                ids = [str(v) for v in column.to_pylist()]
            else:
                ids = [f"{location}#{offset + r}" for r in range(rows)]
            units.append(Unit("rows", location, first_unit + group, location, group, ids))
            offset += rows
        return units
    wanted_text = f"a path column {columns.path!r}" + (
        "" if is_csv else f" or a bytes column {columns.bytes!r}"
    )
    raise ValueError(
        f"manifest {location!r} has columns {names}; it needs {wanted_text} (choose the columns "
        "with path_column/bytes_column, --path-column/--bytes-column)"
    )


def expand_sources(
    sources: Sequence[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    columns: ManifestColumns | None = None,
) -> list[Unit]:
    """Expand sources (folders, globs, files, manifests, tar shards) into ordered units.

    Args:
        sources: Local paths or URIs, see the module docstring.
        recursive: Descend into sub-folders of folder sources.
        columns: The manifest columns (default :class:`ManifestColumns`).

    Returns:
        Units numbered in order; an image id reached twice is kept at its first place.

    Raises:
        FileNotFoundError: A source does not exist or a glob matches nothing (named).
        ValueError: A manifest lacks the needed columns.

    Example:
        >>> expand_sources([])
        []
    """
    columns = columns or ManifestColumns()
    named: list[str] = []  # files (local or URI), in order, before classification
    for raw in sources:
        text = os.fspath(raw)
        if is_uri(text):
            fs, path = pafs.FileSystem.from_uri(text)
            if _has_glob(path):
                matches = _glob_uri(fs, path)
                if not matches:
                    raise FileNotFoundError(f"{text!r} matches nothing")
                named += [_uri_of(m, text, path) for m in matches]
                continue
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                listed = _list_uri_folder(fs, path, recursive)
                named += [_uri_of(p, text, path) for p in listed]
            elif info.type == pafs.FileType.File:
                named.append(text)
            else:
                raise FileNotFoundError(f"{text!r} does not exist")
        elif _has_glob(text) and not os.path.exists(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{text!r} matches nothing")
            named += [m for m in matches if os.path.isfile(m)]
        elif Path(text).is_dir():
            named += expand_paths([text], recursive=recursive)
        elif Path(text).exists():
            named.append(text)
        else:
            raise FileNotFoundError(f"{text!r} does not exist")

    units: list[Unit] = []
    seen: set[str] = set()
    for location in named:
        kind = _kind_of(location)
        if kind == "manifest":
            new = _manifest_units(location, columns, len(units))
        elif kind == "tar":
            new = [Unit("tar", location, len(units), location)]
        else:
            new = [Unit("file", location, len(units), location)]
        for unit in new:
            key = unit.image_id if unit.kind != "rows" else f"{unit.location}#rg{unit.row_group}"
            if key in seen:
                continue
            seen.add(key)
            unit.unit = len(units)
            units.append(unit)
    return units


def units_table(units: Sequence[Unit]) -> pa.Table:
    """The units as an Arrow table (what the Ray dataset is built from)."""
    return pa.table(
        {
            "kind": [u.kind for u in units],
            "location": [u.location for u in units],
            "unit": pa.array([u.unit for u in units], pa.int64()),
            "image_id": [u.image_id for u in units],
            "row_group": pa.array([u.row_group for u in units], pa.int64()),
            "ids": pa.array([u.ids for u in units], pa.list_(pa.string())),
            "skip": pa.array([u.skip for u in units], pa.list_(pa.string())),
        }
    )


Read = tuple[str, int, "str | bytes | None", "str | None"]


def _read_bytes(location: str) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream:
        return bytes(stream.read())


def _read_tar(location: str, skip: set[str]) -> Iterator[Read]:
    item = 0
    try:
        if is_uri(location):
            fs, path = resolve(location)
            handle = fs.open_input_stream(path)
        else:
            handle = open(location, "rb")  # noqa: SIM115 - closed in the finally below
        try:
            # streaming mode reads the shard front to back once, from disk or a bucket alike
            with tarfile.open(fileobj=handle, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    name = member.name
                    if posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                        continue
                    image_id = f"{location}#{name}"
                    position = item
                    item += 1
                    if image_id in skip:
                        continue
                    extracted = archive.extractfile(member)
                    if extracted is None:
                        yield image_id, position, None, f"TarError: cannot read member {name!r}"
                        continue
                    yield image_id, position, extracted.read(), None
        finally:
            handle.close()
    except Exception as error:
        # a missing, truncated or corrupt shard: its members read so far keep their rows, the
        # shard itself gets one error row after them
        if location not in skip:
            yield location, item, None, describe_error(error)


def _read_rows(unit: Mapping[str, Any], columns: ManifestColumns, skip: set[str]) -> Iterator[Read]:
    location = str(unit["location"])
    ids = [str(i) for i in unit["ids"]]
    try:
        fs, path = resolve(location)
        table = pq.ParquetFile(path, filesystem=fs).read_row_group(
            int(unit["row_group"]),
            [columns.bytes],
        )
        values = table.column(0).to_pylist()
    except Exception as error:
        for item, image_id in enumerate(ids):
            if image_id not in skip:
                yield image_id, item, None, describe_error(error)
        return
    for item, (image_id, value) in enumerate(zip(ids, values, strict=True)):
        if image_id in skip:
            continue
        if value is None:
            yield image_id, item, None, f"ValueError: {columns.bytes!r} is empty in this row"
        else:
            yield image_id, item, bytes(value), None


def read_unit(unit: Mapping[str, Any], columns: ManifestColumns) -> Iterator[Read]:
    """The images of one unit: ``(id, item, source, error)``, ``source`` a path or bytes.

    Args:
        unit: One row of :func:`units_table`.
        columns: The manifest columns (for ``rows`` units).

    Yields:
        Per image its id, its position in the unit, and either a local path / the encoded bytes
        (``error`` None) or None and a one-line error.
    """
    kind = unit["kind"]
    location = str(unit["location"])
    skip = {str(s) for s in unit["skip"]}
    if kind == "file":
        if is_uri(location):
            try:
                yield str(unit["image_id"]), 0, _read_bytes(location), None
            except Exception as error:
                yield str(unit["image_id"]), 0, None, describe_error(error)
        else:
            yield str(unit["image_id"]), 0, location, None
    elif kind == "tar":
        yield from _read_tar(location, skip)
    else:
        yield from _read_rows(unit, columns, skip)


def _shard_of(image_id: str, shards: Mapping[str, _T]) -> _T | None:
    """The shard (keyed by its id) a member id ``<shard>#<member>`` belongs to, if any.

    The shard's own name may hold a ``#``, so each ``#`` is tried as the separator; a dict lookup
    each, so resuming millions of ids stays linear.
    """
    position = image_id.find("#")
    while position != -1:
        shard = shards.get(image_id[:position])
        if shard is not None:
            return shard
        position = image_id.find("#", position + 1)
    return None


def apply_resume(units: list[Unit], done: set[str]) -> list[Unit]:
    """The units with work left: done files dropped, done rows and tar members skipped.

    Args:
        units: From :func:`expand_sources` (their ``skip`` lists are filled in place).
        done: Ids that already have a row.

    Returns:
        The units still to read, in order.

    Example:
        >>> units = [Unit("file", "a.png", 0, "a.png"), Unit("tar", "s.tar", 1, "s.tar")]
        >>> [(u.image_id, u.skip) for u in apply_resume(units, {"a.png", "s.tar#x.jpg"})]
        [('s.tar', ['s.tar#x.jpg'])]
    """
    shards = {u.image_id: u for u in units if u.kind == "tar"}
    for image_id in done:
        shard = _shard_of(image_id, shards)
        if shard is not None:
            shard.skip.append(image_id)
    todo = []
    for unit in units:
        if unit.kind == "file" and unit.image_id in done:
            continue
        if unit.kind == "rows":
            unit.skip = [i for i in unit.ids if i in done]
            if len(unit.skip) == len(unit.ids):
                continue
        todo.append(unit)
    return todo


def order_keys(units: Sequence[Unit]) -> Callable[[Sequence[str]], tuple[list[int], list[int]]]:
    """``ids -> (units, items)``: where the rows of a previous output go in this run's order.

    Known ids (files, manifest rows) take their unit and position; a tar member takes its
    shard's unit and, inside it, its row's position in the previous output; an id no longer
    among the inputs goes after everything, in its previous order.

    Example:
        >>> keys = order_keys([Unit("file", "a.png", 0, "a.png"), Unit("tar", "s.tar", 1, "s.tar")])
        >>> keys(["gone.png", "s.tar#x.jpg", "a.png"])
        ([2, 1, 0], [0, 1, 0])
    """
    known: dict[str, tuple[int, int]] = {}
    shards: dict[str, int] = {}
    for unit in units:
        for item, image_id in enumerate(unit.expected_ids() or []):
            known.setdefault(image_id, (unit.unit, item))
        if unit.kind == "tar":
            shards[unit.image_id] = unit.unit
    last = len(units)

    def keys(ids: Sequence[str]) -> tuple[list[int], list[int]]:
        out_units, out_items = [], []
        for position, image_id in enumerate(ids):
            if image_id in known:
                unit, item = known[image_id]
            else:
                shard = _shard_of(image_id, shards)
                unit, item = (last if shard is None else shard), position
            out_units.append(unit)
            out_items.append(item)
        return out_units, out_items

    return keys
