#!/usr/bin/env python3
"""Side-by-side benchmark: hnswdb against hnswlib, usearch and faiss IndexHNSWFlat.

    pip install hnswlib usearch faiss-cpu numpy matplotlib
    cargo build --release
    python3 benches/compare/compare.py DATASET_DIR [--metric cosine|l2] [--out docs/bench-NAME]

DATASET_DIR holds base.fvecs, query.fvecs and gt.ivecs (see scripts/make_debian.py, or
`hnswdb synth`). Every library gets the same M and ef_construction; each is built with 1
and with 2 threads (timed), saved, reloaded (timed), then queried on 1 thread at each ef
of the sweep (all queries in one batch call for the peers; a Rust loop for hnswdb, via its
CLI). The sweeps run in --rounds rounds (default 3), the libraries taking turns in each,
and each ef's QPS is the median over the rounds. Prints one markdown report, with
hnswdb's QPS divided by each peer's at matched recall (interpolated along each curve),
and writes it plus a recall-vs-QPS plot to --out.
"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, time
from datetime import date

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HNSWDB = os.path.join(ROOT, 'target', 'release', 'hnswdb')
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
TARGETS = [0.90, 0.95, 0.99]
BUILD_THREADS = (1, 2)


def vecs(path, dtype):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(dtype).copy()


def recall(labels, gt, k=10):
    return float(np.mean([len(set(map(int, l[:k])) & set(map(int, g[:k]))) / k for l, g in zip(labels, gt)]))


def dir_size(path):
    """Bytes allocated on disk (hnswdb's files grow in steps: unused capacity is sparse)."""
    files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    return sum(os.stat(f).st_blocks * 512 for f in files)


def timed(f):
    t = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t


def sweep_batch(search, q, gt, k=10):
    """search(ef) -> labels for all queries, one thread; returns [(ef, recall, qps)]."""
    out = []
    for ef in EFS:
        search(ef)  # warm-up pass: caches, lazy allocation
        labels, secs = timed(lambda: search(ef))
        out.append((ef, recall(labels, gt, k), len(q) / secs))
    return out


# ---------------------------------------------------------------- libraries

def run_hnswdb(base_path, q, gt, metric, m, efc, work):
    res = {}
    idx = os.path.join(work, 'hnswdb')
    for threads in BUILD_THREADS:
        shutil.rmtree(idx, ignore_errors=True)
        subprocess.run([HNSWDB, 'create', idx, '--dim', str(q.shape[1]), '--metric', metric,
                        '--m', str(m), '--ef-construction', str(efc)], check=True, capture_output=True)
        out = subprocess.run([HNSWDB, 'import', idx, base_path, '--threads', str(threads)],
                             check=True, capture_output=True, text=True).stdout
        # "imported N vectors in X s": insert time plus the closing checkpoint (msync and
        # metadata commit), not the reading of the input file.
        res[f'build_{threads}t'] = float(out.split(' in ')[1].split(' s')[0])
    res['size'] = dir_size(idx)  # every file: vectors, graph0, codes.N, meta.redb, wal/
    qpath = os.path.join(work, 'query.fvecs')
    gtpath = os.path.join(work, 'gt.ivecs')
    # The first run only warms the page cache; in each sweep the --warmup pass maps the
    # pages into the new process (the peers get an untimed pass per ef too, in sweep_batch).
    def run():
        lines = subprocess.run([HNSWDB, 'search', idx, '--query', qpath, '--gt', gtpath, '--k', '10',
                                '--ef', ','.join(map(str, EFS)), '--threads', '1', '--json', '--warmup', '1'],
                               check=True, capture_output=True, text=True).stdout.splitlines()
        return [json.loads(l) for l in lines]
    def sweep():
        rows = run()
        res['load'] = rows[0]['open_ms'] / 1e3  # the latest open, page cache warm
        return [(r['ef'], r['recall'], r['qps']) for r in rows]
    run()
    return res, sweep


def run_hnswlib(base, q, gt, metric, m, efc, work):
    import hnswlib
    res = {}
    space = {'cosine': 'cosine', 'l2': 'l2', 'ip': 'ip'}[metric]
    for threads in BUILD_THREADS:
        index = hnswlib.Index(space=space, dim=base.shape[1])
        index.init_index(max_elements=len(base), ef_construction=efc, M=m, random_seed=100)
        index.set_num_threads(threads)
        _, res[f'build_{threads}t'] = timed(lambda: index.add_items(base, np.arange(len(base))))
    path = os.path.join(work, 'hnswlib.bin')
    index.save_index(path)
    res['size'] = dir_size(path)
    loaded = hnswlib.Index(space=space, dim=base.shape[1])
    _, res['load'] = timed(lambda: loaded.load_index(path))
    loaded.set_num_threads(1)

    def search(ef):
        loaded.set_ef(ef)
        return loaded.knn_query(q, k=10, num_threads=1)[0]
    return res, lambda: sweep_batch(search, q, gt)


def run_usearch(base, q, gt, metric, m, efc, work):
    from usearch.index import Index
    res = {}
    usearch_metric = {'cosine': 'cos', 'l2': 'l2sq', 'ip': 'ip'}[metric]
    for threads in BUILD_THREADS:
        index = Index(ndim=base.shape[1], metric=usearch_metric, dtype='f32', connectivity=m,
                      expansion_add=efc, expansion_search=64)
        _, res[f'build_{threads}t'] = timed(lambda: index.add(np.arange(len(base)), base, threads=threads))
    path = os.path.join(work, 'usearch.bin')
    index.save(path)
    res['size'] = dir_size(path)
    loaded = Index(ndim=base.shape[1], metric=usearch_metric, dtype='f32', connectivity=m)
    _, res['load'] = timed(lambda: loaded.load(path))

    def search(ef):
        loaded.expansion_search = ef
        return loaded.search(q, 10, threads=1).keys
    return res, lambda: sweep_batch(search, q, gt)


def run_faiss(base, q, gt, metric, m, efc, work):
    import faiss
    res = {}
    if metric == 'cosine':
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    fmetric = faiss.METRIC_L2 if metric == 'l2' else faiss.METRIC_INNER_PRODUCT
    for threads in BUILD_THREADS:
        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(base.shape[1], m, fmetric)
        index.hnsw.efConstruction = efc
        _, res[f'build_{threads}t'] = timed(lambda: index.add(np.ascontiguousarray(base, dtype=np.float32)))
    path = os.path.join(work, 'faiss.bin')
    faiss.write_index(index, path)
    res['size'] = dir_size(path)
    loaded, res['load'] = timed(lambda: faiss.read_index(path))
    faiss.omp_set_num_threads(1)
    qc = np.ascontiguousarray(q, dtype=np.float32)

    def search(ef):
        loaded.hnsw.efSearch = ef
        return loaded.search(qc, 10)[1]
    return res, lambda: sweep_batch(search, q, gt)


# ---------------------------------------------------------------- report

def median_curve(curves):
    """Per ef: the recall (the same in every round: searches are deterministic) and the
    median QPS over the rounds."""
    out = []
    for points in zip(*curves):
        assert len({ef for ef, _, _ in points}) == 1
        ef, rec, _ = points[0]
        out.append((ef, rec, float(np.median([qps for _, _, qps in points]))))
    return out


def qps_at(curve, target):
    """QPS at `target` recall, interpolating log(QPS) between the two bracketing points."""
    pts = sorted((r, qps) for _, r, qps in curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            t = 0.0 if r1 == r0 else (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + t * (np.log(q1) - np.log(q0))))
    return None


def per_round_ratio(results, lib, i, target):
    mine = qps_at(results['hnswdb']['rounds'][i], target)
    theirs = qps_at(results[lib]['rounds'][i], target)
    return '–' if mine is None or theirs is None else f'{mine / theirs:.2f}×'


def report(name, results, n, dim, metric, m, efc, nq):
    lines = [f'## {name}', '',
             f'{n:,} × {dim} base vectors, {nq:,} queries, {metric}, M = {m}, ef_construction = {efc}; '
             f'{date.today().isoformat()}, {platform.processor() or platform.machine()}, '
             f'{os.cpu_count()} cores; recall@10 against exact ground truth; queries on 1 thread.', '',
             '| library | build 1 thread (s) | build 2 threads (s) | load/open (ms) | size (MiB) |',
             '|---|---:|---:|---:|---:|']
    fmt_build = lambda r, t: f"{r[f'build_{t}t']:.1f}" if f'build_{t}t' in r else '–'
    for lib, r in results.items():
        lines.append(f"| {lib} | {fmt_build(r, 1)} | {fmt_build(r, 2)} | {r['load'] * 1e3:.1f} | {r['size'] / 2**20:.0f} |")
    lines += ['', '| ef | ' + ' | '.join(f'{lib} recall / QPS' for lib in results) + ' |',
              '|---:|' + '---|' * len(results)]
    for i, ef in enumerate(EFS):
        cells = [f"{r['curve'][i][1]:.4f} / {r['curve'][i][2]:,.0f}" for r in results.values()]
        lines.append(f'| {ef} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| recall@10 | ' + ' | '.join(f'{lib} QPS' for lib in results) + ' | '
              + ' | '.join(f'hnswdb ÷ {lib}' for lib in results if lib != 'hnswdb') + ' |',
              '|---:|' + '---:|' * (2 * len(results) - 1)]
    for t in TARGETS:
        qps = {lib: qps_at(r['curve'], t) for lib, r in results.items()}
        fmt = lambda x: '–' if x is None else f'{x:,.0f}'
        ratio = lambda lib: '–' if qps['hnswdb'] is None or qps[lib] is None else f"{qps['hnswdb'] / qps[lib]:.2f}×"
        lines.append(f'| {t:.2f} | ' + ' | '.join(fmt(qps[lib]) for lib in results) + ' | '
                     + ' | '.join(ratio(lib) for lib in results if lib != 'hnswdb') + ' |')
    if len(results['hnswdb'].get('rounds', [])) > 1:
        lines += ['', f'hnswdb ÷ peer at recall 0.95 in each of the {len(results["hnswdb"]["rounds"])} rounds '
                  '(the table above takes the median QPS per ef): ' + '; '.join(
                      f"{lib} " + ', '.join(per_round_ratio(results, lib, i, 0.95)
                                            for i in range(len(results['hnswdb']['rounds'])))
                      for lib in results if lib != 'hnswdb')]
    b = results['hnswdb']
    lines += ['', 'Build throughput, hnswdb ÷ peer (2 threads): ' + ', '.join(
        f"{lib} {r['build_2t'] / b['build_2t']:.2f}×" for lib, r in results.items() if lib != 'hnswdb'), '']
    return '\n'.join(lines)


def plot(name, results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lib, r in results.items():
        rec = [c[1] for c in r['curve']]
        qps = [c[2] for c in r['curve']]
        ax.plot(rec, qps, marker='o', ms=3, label=lib, lw=2 if lib == 'hnswdb' else 1.2)
    ax.set_yscale('log')
    ax.set_xlabel('recall@10')
    ax.set_ylabel('queries per second, 1 thread (log)')
    ax.set_title(name)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('dataset')
    ap.add_argument('--metric', default='cosine', choices=['cosine', 'l2', 'ip'])
    ap.add_argument('--m', type=int, default=16)
    ap.add_argument('--ef-construction', type=int, default=200)
    ap.add_argument('--libs', default='hnswdb,hnswlib,usearch,faiss')
    ap.add_argument('--name', default=None)
    ap.add_argument('--out', default=None, help='write OUT.md and OUT.png')
    ap.add_argument('--builds', default='1,2', help='thread counts to build with (the last build is queried)')
    ap.add_argument('--rounds', type=int, default=3, help='sweeps per library, interleaved; QPS is the median')
    a = ap.parse_args()
    global BUILD_THREADS
    BUILD_THREADS = tuple(int(t) for t in a.builds.split(','))
    if not os.path.exists(HNSWDB):
        sys.exit('build hnswdb first: cargo build --release')
    base = vecs(os.path.join(a.dataset, 'base.fvecs'), np.float32)
    q = vecs(os.path.join(a.dataset, 'query.fvecs'), np.float32)
    gt = vecs(os.path.join(a.dataset, 'gt.ivecs'), np.int32)[:, :10]
    name = a.name or os.path.basename(os.path.normpath(a.dataset))
    runners = {'hnswdb': run_hnswdb, 'hnswlib': run_hnswlib, 'usearch': run_usearch, 'faiss': run_faiss}
    results, sweeps, rounds = {}, {}, {}
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, 'target')) as work:
        shutil.copy(os.path.join(a.dataset, 'query.fvecs'), os.path.join(work, 'query.fvecs'))
        shutil.copy(os.path.join(a.dataset, 'gt.ivecs'), os.path.join(work, 'gt.ivecs'))
        for lib in a.libs.split(','):
            print(f'# {lib}: build ...', file=sys.stderr, flush=True)
            if lib == 'hnswdb':
                results[lib], sweeps[lib] = run_hnswdb(os.path.join(a.dataset, 'base.fvecs'), q, gt, a.metric, a.m, a.ef_construction, work)
            else:
                results[lib], sweeps[lib] = runners[lib](base, q, gt, a.metric, a.m, a.ef_construction, work)
        # Rounds of sweeps, the libraries taking turns within each: a slow spell of the
        # machine then hits every library alike instead of whichever happened to run in it.
        for i in range(a.rounds):
            for lib in results:
                print(f'# round {i + 1}/{a.rounds}: {lib} ...', file=sys.stderr, flush=True)
                rounds.setdefault(lib, []).append(sweeps[lib]())
    for lib, curves in rounds.items():
        results[lib]['curve'] = median_curve(curves)
        results[lib]['rounds'] = curves
    text = report(name, results, len(base), base.shape[1], a.metric, a.m, a.ef_construction, len(q))
    print(text)
    if a.out:
        with open(a.out + '.md', 'w') as f:
            f.write(text + '\n')
        plot(name, results, a.out + '.png')


if __name__ == '__main__':
    main()
