#!/usr/bin/env python3
"""Tuning sweep: what M and ef_construction do to hnswdb's build time, disk size, and
recall-vs-QPS curve (ef swept), on one dataset.

    cargo build --release
    python3 benches/compare/tuning.py DATASET_DIR [--metric cosine] [--out docs/tuning-NAME]

Builds one index per setting (M in 8, 16, 32 at ef_construction 200; ef_construction in
50, 100, 400 at M 16) on 2 threads through the CLI, queries each on 1 thread with the
same sweep as compare.py, prints a markdown report and writes it plus a two-panel plot.
"""
import argparse, os, shutil, sys, tempfile

import compare

SETTINGS = [(8, 200), (16, 200), (32, 200), (16, 50), (16, 100), (16, 400)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('dataset')
    ap.add_argument('--metric', default='cosine', choices=['cosine', 'l2', 'ip'])
    ap.add_argument('--name', default=None)
    ap.add_argument('--out', default=None, help='write OUT.md and OUT.png')
    a = ap.parse_args()
    compare.BUILD_THREADS = (2,)
    q = compare.vecs(os.path.join(a.dataset, 'query.fvecs'), compare.np.float32)
    gt = compare.vecs(os.path.join(a.dataset, 'gt.ivecs'), compare.np.int32)[:, :10]
    base_path = os.path.join(a.dataset, 'base.fvecs')
    n = os.path.getsize(base_path) // (4 * (q.shape[1] + 1))
    results = {}
    with tempfile.TemporaryDirectory(dir=os.path.join(compare.ROOT, 'target')) as work:
        for f in ('query.fvecs', 'gt.ivecs'):
            shutil.copy(os.path.join(a.dataset, f), os.path.join(work, f))
        for m, efc in SETTINGS:
            print(f'# M {m}, ef_construction {efc} ...', file=sys.stderr, flush=True)
            results[(m, efc)] = compare.run_hnswdb(base_path, q, gt, a.metric, m, efc, work)
    name = a.name or os.path.basename(os.path.normpath(a.dataset))
    lines = [f'## Tuning on {name}', '',
             f'{n:,} × {q.shape[1]}, {len(q):,} queries, {a.metric}; build on 2 threads, queries on 1 thread; '
             f'{compare.date.today().isoformat()}.', '',
             '| M | ef_construction | build (s) | disk (MiB) | QPS @ 0.90 | QPS @ 0.95 | QPS @ 0.99 | best recall (ef 512) |',
             '|---:|---:|---:|---:|---:|---:|---:|---:|']
    fmt = lambda x: '–' if x is None else f'{x:,.0f}'
    for (m, efc), r in results.items():
        at = [fmt(compare.qps_at(r['curve'], t)) for t in compare.TARGETS]
        lines.append(f"| {m} | {efc} | {r['build_2t']:.1f} | {r['size'] / 2**20:.0f} | " + ' | '.join(at)
                     + f" | {r['curve'][-1][1]:.4f} |")
    lines += ['', '| ef | ' + ' | '.join(f'M {m}, efc {e}' for m, e in results) + ' |',
              '|---:|' + '---|' * len(results)]
    for i, ef in enumerate(compare.EFS):
        lines.append(f'| {ef} | ' + ' | '.join(f"{r['curve'][i][1]:.4f} / {r['curve'][i][2]:,.0f}"
                                              for r in results.values()) + ' |')
    text = '\n'.join(lines)
    print(text)
    if a.out:
        with open(a.out + '.md', 'w') as f:
            f.write(text + '\n')
        plot(name, results, a.out + '.png')


def plot(name, results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    panels = [('M (ef_construction 200)', lambda m, e: e == 200, lambda m, e: f'M {m}'),
              ('ef_construction (M 16)', lambda m, e: m == 16, lambda m, e: f'ef_construction {e}')]
    for ax, (title, keep, label) in zip(axes, panels):
        for (m, e), r in results.items():
            if keep(m, e):
                ax.plot([c[1] for c in r['curve']], [c[2] for c in r['curve']], marker='o', ms=3, label=label(m, e))
        ax.set_yscale('log')
        ax.set_xlabel('recall@10 (points: ef 10 … 512)')
        ax.set_title(f'{name}: {title}')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
    axes[0].set_ylabel('queries per second, 1 thread (log)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == '__main__':
    main()
