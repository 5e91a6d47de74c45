"""Payload values keep their JSON type across the Python boundary (issue 23, class 3): a
seeded random loop of Python and numpy scalars in nested containers, round-tripped
through every way a payload goes in; anything else is a TypeError naming where it is."""

import datetime
import decimal
import random

import numpy as np
import pytest

import hnswdb

DIM = 4
NUMPY_INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
NUMPY_FLOATS = [np.float16, np.float32, np.float64]
# Values that have no JSON type of their own (np.longdouble is left out: on platforms where
# it is a double, numpy makes it a Python float, so whether it is refused depends on the host).
UNSUPPORTED = [
    complex(1, 2),
    b"bytes",
    {1, 2},
    frozenset(),
    object(),
    decimal.Decimal("1.5"),
    datetime.date(2024, 1, 1),
    np.complex64(1),
    np.datetime64("2024-01-01"),
    np.array([1, 2]),
]


def random_scalar(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5 if rng.random() < 0.5 else np.bool_(rng.random() < 0.5)
    if kind == 2:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 3:
        dtype = rng.choice(NUMPY_INTS)
        info = np.iinfo(dtype)
        return dtype(rng.randint(int(info.min), int(info.max)))
    if kind == 4:
        return rng.uniform(-1e300, 1e300) if rng.random() < 0.5 else rng.random()
    if kind == 5:
        return rng.choice(NUMPY_FLOATS)(rng.uniform(-1000, 1000))
    # Any code point but the surrogates (not text: UTF-8 cannot hold them).
    return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0xE000, 0x10FFFF)])) for _ in range(5))


def random_value(rng, depth=0):
    kind = rng.randrange(4) if depth < 3 else 0
    if kind == 0:
        return random_scalar(rng)
    items = [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 1:
        return items
    if kind == 2:
        return tuple(items)
    return {f"k{i}": item for i, item in enumerate(items)}


def as_json(value):
    """What the value must read back as: json.loads of its JSON form."""
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def assert_same(got, want, where="payload"):
    assert type(got) is type(want), f"{where}: {got!r} ({type(got).__name__}) is not {want!r} ({type(want).__name__})"
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in want:
            assert_same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


@pytest.fixture
def index():
    index = hnswdb.Index(space="l2", dim=DIM)
    index.init_index(max_elements=1000)
    return index


def test_numpy_bool_is_a_json_bool(index):
    index.add_items(np.ones(DIM), [0], payloads=[{"ok": np.bool_(True), "n": np.int64(1), "f": np.float32(1)}])
    assert_same(index.get_payloads([0])[0], {"ok": True, "n": 1, "f": 1.0})


def test_random_payloads_round_trip_with_their_types(index, tmp_path):
    rng = random.Random(2024)
    payloads = [{"value": random_value(rng), "nested": {"list": [random_value(rng)]}} for _ in range(300)]
    ids = np.arange(len(payloads))
    index.add_items(np.random.default_rng(0).random((len(ids), DIM)), ids, payloads=payloads[:100] + [None] * 200)
    index.set_payloads(ids[100:200], payloads[100:200], replace=True)
    for i in ids[200:]:
        index.set_payload(int(i), payloads[i], replace=True)
    index.save_index(str(tmp_path / "snapshot.bin"))
    loaded = hnswdb.Index(space="l2", dim=DIM)
    loaded.load_index(str(tmp_path / "snapshot.bin"))
    for source in (index, loaded):
        for got, want in zip(source.get_payloads(ids), payloads):
            assert_same(got, as_json(want))


def test_unsupported_values_are_a_type_error_naming_the_key(index):
    index.add_items(np.ones(DIM), [0])
    rng = random.Random(7)
    for bad in UNSUPPORTED:
        good = random_value(rng)
        payload = {"a": {"b": [good, bad]}}
        with pytest.raises(TypeError, match=r'payload\["a"\]\["b"\]\[1\]'):
            index.set_payload(0, payload)
        with pytest.raises(TypeError, match=r'payloads\[0\]\["a"\]'):
            index.add_items(np.ones(DIM), [1], payloads=[payload])
    with pytest.raises(TypeError, match=r'payload\["a"\]: key 3'):
        index.set_payload(0, {"a": {3: 1}})
    with pytest.raises(ValueError, match=r'payload\["big"\]: .* 64 bits'):
        index.set_payload(0, {"big": 2**64})
    # A lone surrogate is a str but not text (it was Python's UnicodeEncodeError).
    for bad in ({"s": "a\ud800"}, {"\udfff": 1}):
        with pytest.raises(hnswdb.InvalidInputError, match="lone surrogate"):
            index.set_payload(0, bad)
        with pytest.raises(hnswdb.InvalidInputError, match="lone surrogate"):
            index.knn_query(np.ones(DIM), k=1, filter=bad)
    assert index.get_payloads([0]) == [None] and 1 not in index  # nothing was written


def test_cyclic_and_deep_payloads_and_filters_are_refused_not_a_crash(index):
    # Until 2026-12-07 the conversion recursed without a bound: a dict containing itself,
    # or a list 20,000 deep, overflowed the stack and killed the interpreter (SIGSEGV).
    index.add_items(np.ones(DIM), [0], payloads=[{"ok": 1}])
    cyclic = {}
    cyclic["self"] = cyclic
    looped = []
    looped.append(looped)
    deep = 0
    for _ in range(200_000):
        deep = [deep]
    not_deep = {"ok": 1}
    for _ in range(200_000):
        not_deep = {"$not": not_deep}
    for bad in (cyclic, {"list": looped}, {"deep": deep}):
        with pytest.raises(hnswdb.InvalidInputError, match="127 deep"):
            index.set_payload(0, bad)
        with pytest.raises(hnswdb.InvalidInputError, match="127 deep"):
            index.add_items(np.ones(DIM), [1], payloads=[bad])
    with pytest.raises(hnswdb.InvalidInputError, match="127 deep"):
        index.knn_query(np.ones(DIM), k=1, filter=not_deep)
    # 127 levels, the documented limit, still go in (the payload object is level 1).
    ok = 0
    for _ in range(126):
        ok = [ok]
    index.set_payload(0, {"ok": ok}, replace=True)
    assert index.get_payloads([0]) == [{"ok": ok}] and 1 not in index
