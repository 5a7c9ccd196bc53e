"""Where cells run (bench/executors.py): the thread count never follows the machine's load."""

import os

import numpy as np
import torch

from bench import executors
from bench.cells import Cell, instantiate
from bench.datasets import ImageItem
from bench.record import CellRecord
from bench.store import Store


def test_serial_runs_keep_the_thread_count_whatever_the_load(monkeypatch, tmp_path):
    """Fits (DIP, the flow prior) give different numbers with different thread counts: a busy machine must
    not change a cell's result, so the count is torch's (or OMP_NUM_THREADS), never adapted to the load."""
    for name in executors.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 5.0, 3.0))
    seen = []
    monkeypatch.setattr(executors, "execute_cell", lambda *args: seen.append(torch.get_num_threads()) or CellRecord())
    method = instantiate("method", "identity", {}, "smoke")[0]
    noise = instantiate("degradation", "noise", {}, "smoke")[0]
    cell = Cell.make(method, noise, ImageItem("flat", np.full((16, 16, 3), 0.5, np.float32)), 0, "smoke", "demo")
    config = type("C", (), {"jobs": 1, "lpips": False, "device": "cpu", "progress": False})()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        executor = executors.SerialExecutor(config, Store(tmp_path))
        list(executor.run([cell], []))
        executor.close()
        assert seen == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
