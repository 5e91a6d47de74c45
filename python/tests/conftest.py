"""Shared pytest configuration."""


def pytest_configure(config):
    # LangChain's standard vector store suite (test_langchain.py) has unmarked async
    # tests: it is written for pytest-asyncio's "auto" mode, which LangChain's own
    # repositories set. Use it unless the command line chose a mode.
    if getattr(config.option, "asyncio_mode", False) is None:
        config.option.asyncio_mode = "auto"
