import pytest

from bench.runner import RunConfig, run_grid
from bench.store import Store


def test_tv_beats_identity_on_noise_on_div2k_crops(shared, tmp_path):
    """Issue acceptance at CPU scale: ≥ 2 dB over identity for σ = 25 on DIV2K crops (quick budget)."""
    folder = shared("data", "eval", "div2k_valid_crops256")
    run_grid(RunConfig(methods=["identity", "tv"], degradations=["noise"], dataset=f"folder:{folder}", limit=2,
                       profile="quick", crop=128, results_dir=str(tmp_path), lpips=False, progress=False))
    df = Store(tmp_path).dataframe()
    mean = df.groupby("method")["psnr"].mean()
    assert mean["tv"] >= mean["identity"] + 2.0, mean.to_dict()


@pytest.mark.parametrize("degradation", ["blur", "inpaint"])
def test_tv_improves_other_tasks(tmp_path, degradation):
    run_grid(RunConfig(methods=["identity", "tv"], degradations=[degradation], dataset="builtin", limit=1,
                       profile="smoke", results_dir=str(tmp_path), lpips=False, progress=False,
                       overrides={"tv": {"iterations": "150"}}))
    mean = Store(tmp_path).dataframe().groupby("method")["psnr"].mean()
    assert mean["tv"] > mean["identity"] + 0.3, mean.to_dict()
