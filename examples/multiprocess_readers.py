"""Many processes on one index: one writer ingests while reader processes search it.

    python3 examples/multiprocess_readers.py [INDEX_DIR]

The writer (this process) creates the index and adds batches; four reader processes
(multiprocessing, as web-server workers would be) open it read-only, search in a loop and
`refresh()` to see what the writer has acknowledged since, until the writer is done. Readers write nothing,
so any number of them can run, on read-only files too; a second writer gets an error.
"""

import multiprocessing as mp
import sys
import tempfile

import numpy as np

import hnswdb

DIM = 32


def batch(start, n):
    rng = np.random.default_rng(start)
    return rng.normal(size=(n, DIM)).astype(np.float32), np.arange(start, start + n)


def reader(path, writing, results):
    index = hnswdb.Index.open(path, read_only=True)
    queries, served = batch(10**9, 50)[0], 0
    while True:
        done = not writing.is_set()  # read before the refresh: it then sees every write
        labels, _ = index.knn_query(queries, k=5)
        served += len(labels)
        index.refresh()
        if done:
            break
    results.put((served, index.get_current_count()))


def main(path, batches=20):
    writer = hnswdb.Index(space="l2", dim=DIM)
    writer.init_index(max_elements=1000, path=path)
    writer.add_items(*batch(0, 1000))
    results, writing = mp.Queue(), mp.Event()
    writing.set()
    readers = [mp.Process(target=reader, args=(path, writing, results)) for _ in range(4)]
    for r in readers:
        r.start()
    added = 1000
    for _ in range(batches):
        writer.add_items(*batch(added, 200))  # durable, and visible to a refresh, on return
        added += 200
    writing.clear()
    answers = [results.get() for _ in readers]
    for r in readers:
        r.join()
    writer.close()
    print(f"writer added {added} vectors; readers answered "
          f"{sum(a for a, _ in answers)} queries and each saw all {added} in the end")
    return added, answers


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/index")
