import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tests on tiny tensors: one thread avoids OpenMP barrier stalls on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
