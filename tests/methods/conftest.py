import pytest


@pytest.fixture(autouse=True, scope="module")
def methods_run_on_one_thread(one_thread):
    """Every method test uses tiny tensors: one thread (the ``one_thread`` fixture of tests/conftest.py)."""
