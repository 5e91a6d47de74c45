"""Many processes on one index: one writer ingests while reader processes search it.

    python3 examples/multiprocess_readers.py [INDEX_DIR]

The writer (this process) creates the index and keeps adding batches; four reader
processes (multiprocessing, as web-server workers would be) open it read-only, search in a
loop and `refresh()` to see what the writer has acknowledged since. Readers write nothing,
so any number of them can run, on read-only files too; a second writer gets an error.
"""

import multiprocessing as mp
import sys
import tempfile
import time

import numpy as np

import hnswdb

DIM = 32


def batch(start, n):
    rng = np.random.default_rng(start)
    return rng.normal(size=(n, DIM)).astype(np.float32), np.arange(start, start + n)


def reader(path, seconds, results):
    index = hnswdb.Index.open(path, read_only=True)
    queries, served, seen = batch(10**9, 50)[0], 0, 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        labels, _ = index.knn_query(queries, k=5)
        served += len(labels)
        seen = max(seen, index.get_current_count())
        index.refresh()
    results.put((served, seen))


def main(path, seconds=3.0):
    writer = hnswdb.Index(space="l2", dim=DIM)
    writer.init_index(max_elements=1000, path=path)
    writer.add_items(*batch(0, 1000))
    results = mp.Queue()
    readers = [mp.Process(target=reader, args=(path, seconds, results)) for _ in range(4)]
    for r in readers:
        r.start()
    added, deadline = 1000, time.time() + seconds
    while time.time() < deadline:
        writer.add_items(*batch(added, 200))
        added += 200
    for r in readers:
        r.join()
    answers = [results.get() for _ in readers]
    writer.close()
    print(f"writer added {added} vectors; readers answered "
          f"{sum(a for a, _ in answers)} queries and saw up to {max(s for _, s in answers)}")
    return added, answers


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/index")
