"""The documentation runs: every ```bash, ```sh, ```console and ```python block of README.md
and docs/*.md, in order, on a fresh copy of the repository.

A block that cannot run here by its nature (a download that takes long, a memory cgroup
that needs root) says so in an HTML comment on the line before it, with the reason:
``<!-- no-run: embeds 60k texts, about 7 minutes -->``. Each file runs in its own copy
of the tracked files (what a fresh clone holds), sharing the repository's target/ so that
cargo finds its build; shell blocks run in bash (-e, -o pipefail) with the built `hnswdb`
and a virtualenv's python/pip first on PATH; the python blocks of one file share one
interpreter, as a reader following the page top to bottom would.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SHELL = {"bash", "sh", "console"}
RUNNABLE = SHELL | {"python"}
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(\S.*?)\s*-->$")
# Few exceptions, each with its reason: a new one is a decision, not a default.
MAX_NO_RUN = 4


def blocks(path):
    """[(language, code, line, no-run reason or None)] of the file's fenced blocks."""
    found, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(2)
        i += 1
        while i < len(lines) and not lines[i].startswith(fence.group(1)):
            i += 1
        code = "\n".join(lines[start + 1 : i]) + "\n"
        if lang == "console":  # commands are the "$ " lines; the rest is their output
            code = "".join(l[2:] + "\n" for l in code.splitlines() if l.startswith("$ "))
        before = next((l.strip() for l in reversed(lines[:start]) if l.strip()), "")
        reason = NO_RUN.match(before)
        found.append((lang, code, start + 1, reason and reason.group(1)))
        i += 1
    return found


def fresh_clone(dest):
    """The files a commit of the work tree would hold, with target/ shared."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)  # mtimes kept: cargo's build stays fresh
    (ROOT / "target").mkdir(exist_ok=True)
    (dest / "target").symlink_to(ROOT / "target")


def docs_venv(dest):
    """A virtualenv for the blocks' own pip installs, which sees this test's packages
    (numpy, ray, the built hnswdb) through a .pth file behind its own: an install a
    block makes shadows them, and the test's environment stays as it was."""
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    site = subprocess.run(
        [str(dest / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    # addsitedir, not a bare path: the .pth files there (an editable install's) count too.
    Path(site, "hnswdb-test-env.pth").write_text(f"import site; list(map(site.addsitedir, {ours!r}))\n")
    return dest


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_runnable_blocks_run(doc, tmp_path):
    runnable = [b for b in blocks(doc) if b[0] in RUNNABLE and not b[3]]
    if not runnable:
        pytest.skip("no runnable blocks")
    cli = Path(os.environ.get("HNSWDB_CLI", ROOT / "target" / "release" / "hnswdb"))
    if not cli.exists():
        pytest.skip(f"no built CLI at {cli} (cargo build --release)")
    clone = tmp_path / "clone"
    fresh_clone(clone)
    venv = docs_venv(tmp_path / "venv")
    env = dict(
        os.environ,
        VIRTUAL_ENV=str(venv),
        PATH=os.pathsep.join([str(venv / "bin"), str(cli.parent), str(Path(sys.executable).parent), os.environ["PATH"]]),
    )
    env.pop("PYTHONPATH", None)
    script = tmp_path / "blocks.json"
    script.write_text(json.dumps({"doc": doc.name, "blocks": runnable}))
    # The timeout stops a hang (a Ray actor never scheduled); it is not a speed bound.
    done = subprocess.run(
        [str(venv / "bin" / "python"), __file__, str(script)],
        cwd=clone, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, f"{doc.name}:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"


def test_no_run_exceptions_are_few_and_explained():
    marked = [(d.name, b[2], b[3]) for d in DOCS for b in blocks(d) if b[3]]
    assert len(marked) <= MAX_NO_RUN, marked
    for _, _, reason in marked:
        assert len(reason.split()) >= 3, f"give a reason, not a label: {marked}"


def run(spec):
    """Runs one file's blocks in order (the child process of the test)."""
    spec = json.loads(Path(spec).read_text())
    namespace = {"__name__": "__main__"}
    for lang, code, line, _ in spec["blocks"]:
        where = f"{spec['doc']}:{line}"
        print(f"--- {where} ({lang})", flush=True)
        if lang in SHELL:
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code])
            if done.returncode != 0:
                sys.exit(f"{where}: the {lang} block exited with {done.returncode}")
        else:
            exec(compile(code, where, "exec"), namespace)


if __name__ == "__main__":
    run(sys.argv[1])
