"""Snapshot files: what ``save_index`` writes and ``load_index`` and pickling read.

A snapshot is one uncompressed tar archive: ``snapshot.json`` (what it holds and the
hnswlib-level state: limit, ef...), named numpy arrays (``<name>.npy``), and, for an
``Index``, the index directory as ``index/`` (a checked backup, so it opens on its own).
One file, because hnswlib's users treat a saved index as one file (copy it, remove it);
tar, because any tool can list and unpack it.
"""

import io
import json
import os
import shutil
import tarfile
import tempfile
from typing import Dict, Optional, Tuple, Union

import numpy as np

from ._hnswdb import CorruptError, IndexNotFoundError

FORMAT = "hnswdb-snapshot"
VERSION = 1
META = "snapshot.json"
TREE = "index"

Arrays = Dict[str, np.ndarray]


def write(path: Union[str, os.PathLike], meta: dict, arrays: Arrays, tree: Optional[str] = None) -> None:
    """Writes the snapshot to `path` atomically: into a file beside it, fsynced, then
    renamed over it, so that `path` holds the old snapshot or the new one, never a part."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise IndexNotFoundError(f"cannot save to {path}: no directory {folder}")
    fd, temp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _pack(f, meta, arrays, tree)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    _fsync_dir(folder)


def to_bytes(meta: dict, arrays: Arrays, tree: Optional[str] = None) -> bytes:
    """The snapshot as bytes (for pickling): the same bytes `write` puts in a file."""
    buffer = io.BytesIO()
    _pack(buffer, meta, arrays, tree)
    return buffer.getvalue()


def read(source: Union[str, os.PathLike, bytes], into: Optional[str] = None) -> Tuple[dict, Arrays]:
    """Reads a snapshot (a path, or bytes from `to_bytes`): its metadata and arrays, and
    its index directory unpacked as `into` (which must not exist) if it has one."""
    name = "pickled snapshot" if isinstance(source, bytes) else os.fspath(source)
    try:
        if isinstance(source, bytes):
            archive = tarfile.open(fileobj=io.BytesIO(source), mode="r:")
        else:
            archive = tarfile.open(name, mode="r:")
    except FileNotFoundError as e:
        raise IndexNotFoundError(f"cannot open {name}: {e.strerror}") from None
    except tarfile.TarError:
        raise CorruptError(f"{name} is not an hnswdb snapshot (hnswlib's own index files cannot be read)") from None
    with archive:
        try:
            return _unpack(archive, name, into)
        except (tarfile.TarError, EOFError, ValueError) as e:
            # A truncated or damaged member (tar, JSON or .npy): the file, not the caller.
            raise CorruptError(f"{name} is a damaged snapshot: {e}") from None


def _pack(f, meta: dict, arrays: Arrays, tree: Optional[str]) -> None:
    with tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, META, json.dumps(dict(meta, format=FORMAT, version=VERSION)).encode())
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            _add_bytes(archive, key + ".npy", buffer.getvalue())
        if tree is not None:
            archive.add(tree, arcname=TREE)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _unpack(archive: tarfile.TarFile, name: str, into: Optional[str]) -> Tuple[dict, Arrays]:
    meta, arrays = None, {}
    for member in archive:
        parts = member.name.split("/")
        if member.name == META and member.isfile():
            meta = json.loads(_read_member(archive, member))
        elif len(parts) == 1 and member.name.endswith(".npy") and member.isfile():
            arrays[member.name[:-4]] = np.load(io.BytesIO(_read_member(archive, member)), allow_pickle=False)
        elif parts[0] == TREE and _safe(parts):
            if into is not None:
                _extract(archive, member, os.path.join(into, *parts[1:]))
        else:
            raise CorruptError(f"{name}: unexpected member {member.name!r} in a snapshot")
    if not meta or meta.get("format") != FORMAT:
        raise CorruptError(f"{name} is not an hnswdb snapshot (no {META})")
    if meta.get("version") != VERSION:
        raise CorruptError(f"{name} is a snapshot of version {meta.get('version')}; this hnswdb reads {VERSION}")
    return meta, arrays


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = archive.extractfile(member)
    assert f is not None  # a regular file, checked by the caller
    return f.read()


def _safe(parts: list) -> bool:
    # Only plain names below index/: an archive must never write outside `into`.
    return all(p not in ("", ".", "..") for p in parts)


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
    if member.isdir():
        os.makedirs(dest, exist_ok=True)
    elif member.isfile():
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with archive.extractfile(member) as source, open(dest, "wb") as out:  # type: ignore[union-attr]
            shutil.copyfileobj(source, out)
    else:
        raise CorruptError(f"snapshot member {member.name!r} is neither a file nor a directory")


def _fsync_dir(folder: str) -> None:
    # The rename is durable once the directory entry is.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
