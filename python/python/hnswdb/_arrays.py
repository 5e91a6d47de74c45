"""Vectors from pandas and Arrow, as numpy arrays, without copies where the layout allows.

``as_matrix(data)`` takes what ``add_items``, ``knn_query`` and ``query`` accept and gives
numpy what it can read: a numpy array or list passes through untouched; a pyarrow
``FixedSizeListArray`` of floats becomes a zero-copy view of its values; a ``ListArray``
whose lists all have one length, a ``ChunkedArray`` of either, a pandas ``Series`` of
arrays and a ``DataFrame`` of numeric columns are gathered into one matrix (row-major
rows must be copied out of per-row objects or columns). Neither pandas nor pyarrow is
imported unless the data comes from it.
"""

from typing import Any

import numpy as np

from ._hnswdb import InvalidInputError


def as_matrix(data: Any) -> Any:
    """`data` as a numpy array (or `data` itself when numpy reads it as it is)."""
    if type(data) is np.ndarray:  # the common case, first: a query loop calls this per query
        return data
    module = type(data).__module__.split(".")[0]
    if module == "pyarrow":
        return _from_arrow(data)
    if module == "pandas":
        return _from_pandas(data)
    return data


def _from_arrow(data: Any) -> np.ndarray:
    import pyarrow as pa

    if isinstance(data, pa.ChunkedArray):
        chunks = [_from_arrow(chunk) for chunk in data.chunks]
        if len(chunks) == 1:
            return chunks[0]
        width = _list_width(data.type)
        return np.concatenate(chunks) if chunks else np.zeros((0, width or 0), np.float32)
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if not isinstance(data, pa.Array) or not any(is_kind(data.type) for is_kind in lists):
        raise InvalidInputError(f"an Arrow {data.type} is not vectors: give a list or fixed-size list array of floats")
    if data.null_count:
        raise InvalidInputError(f"row {_first_null(data)} of the Arrow array is null, not a vector")
    width = _list_width(data.type)
    if width is None:  # variable-size lists: all must have one length
        lengths = np.diff(data.offsets.to_numpy())
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.argmax(lengths != lengths[0]))
            raise InvalidInputError(f"row {row} of the Arrow array has {lengths[row]} values, row 0 has {lengths[0]}")
        width = int(lengths[0]) if len(lengths) else 0
    values = data.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InvalidInputError(f"the Arrow vectors hold {values.type}, not numbers")
    if values.null_count:
        raise InvalidInputError("an Arrow vector holds a null component")
    # Zero-copy for a primitive array without nulls (the values of every float list).
    return values.to_numpy(zero_copy_only=False).reshape(len(data), width)


def _list_width(kind: Any) -> Any:
    import pyarrow as pa

    return kind.list_size if pa.types.is_fixed_size_list(kind) else None


def _first_null(data: Any) -> int:
    return int(np.argmax(data.is_null().to_numpy(zero_copy_only=False)))


def _from_pandas(data: Any) -> np.ndarray:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        bad = [name for name, kind in data.dtypes.items() if kind.kind not in "fiu"]
        if bad:
            raise InvalidInputError(f"DataFrame column {bad[0]!r} is {data.dtypes[bad[0]]}, not numbers")
        return data.to_numpy(dtype=np.float32)
    if not isinstance(data, pd.Series):
        raise InvalidInputError(f"a pandas {type(data).__name__} is not vectors: give a Series of arrays or a DataFrame")
    if data.dtype.kind in "fiu":  # one vector, a component per row
        return data.to_numpy()
    arrow = getattr(data.array, "__arrow_array__", None)
    if arrow is not None and data.dtype != object:  # a Series of Arrow lists
        return _from_arrow(arrow())
    rows = data.to_numpy()
    if len(rows) == 0:
        return np.zeros((0, 0), np.float32)
    nulls = [i for i, row in enumerate(rows) if row is None or (np.ndim(row) == 0 and pd.isna(row))]
    if nulls:
        raise InvalidInputError(f"row {nulls[0]} of the Series is {rows[nulls[0]]!r}, not a vector")
    try:
        return np.stack([np.asarray(row, dtype=np.float32) for row in rows])
    except ValueError as e:
        raise InvalidInputError(f"the Series' vectors differ in length or are not numbers: {e}") from None
