import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tests on tiny tensors: one thread avoids OpenMP barrier stalls on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def perturbed_srflow():
    """``make(cfg, seed)``: a tiny SRFlow with every parameter moved off its (near-identity) initialisation."""
    from bench.nets.srflow import SRFlowNet

    def make(cfg, seed: int = 0):
        torch.manual_seed(seed)
        net = SRFlowNet(cfg).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return net

    return make


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(*args) -> (exit code, stdout, stderr)``: ``bench ARGS`` through its real entry point (``main``)."""
    from bench.cli import main

    def invoke(*args):
        monkeypatch.setattr("sys.argv", ["bench", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_info:
            code = exit_info.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke
