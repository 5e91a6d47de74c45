"""Runs hnswlib's own binding tests (vendored unchanged but for `import hnswdb as
hnswlib`; see README.md here) under pytest.

Their files are named bindings_test_*.py, which pytest does not collect by default
(bindings_test.py it does: a *_test.py name). They are unittest suites: only their
TestCase classes are tests (bindings_test_pickle.py's module-level helper
`test_space_main(self, ...)` is not one). They write their index files into the working
directory, so each runs in its own temporary directory.
"""

import pytest


class _UnittestModule(pytest.Module):
    def collect(self):
        return [item for item in super().collect() if isinstance(item, pytest.Class)]


def pytest_collect_file(file_path, parent):
    if file_path.name.startswith("bindings_test_") and file_path.suffix == ".py":
        return _UnittestModule.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def _in_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
