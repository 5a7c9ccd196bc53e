"""Bad input that once gave a silent wrong result through numerics: absurd noise levels and optimisations
that overflow. Rows of README's bad-input table."""

import sqlite3

import pytest
import torch

from bench.api import NumericalError, RestoreContext, check_finite_step
from degradations.noise import Noise
from methods.tv import TotalVariation


def smoke_run(run_cli, tmp_path, *extra, methods="identity,tv", degradations="noise"):
    return run_cli("run", "--dataset", "builtin", "--limit", "1", "--methods", methods, "--degradations", degradations,
                   "--profile", "smoke", "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res"), *extra)


@pytest.mark.parametrize("degradation", ["noise", "blur", "inpaint", "multi", "sr"])
def test_a_noise_level_beyond_the_image_range_is_refused(run_cli, tmp_path, degradation):
    code, out, err = smoke_run(run_cli, tmp_path, "--set", f"{degradation}.sigma=1e9", degradations=degradation)
    assert code == 2
    assert err.strip() == (f"error: {degradation}: sigma=1e+09 is beyond the image range: a noise level must be "
                           "in 0..255 (0-255 scale), e.g. sigma=25")
    assert not (tmp_path / "res" / "results.sqlite").exists()  # refused before anything was computed


def test_the_largest_noise_level_is_still_accepted():
    Noise(Noise.Params(sigma=255.0))


def test_a_huge_tv_weight_is_solved_not_returned_unchanged():
    obs = Noise().degrade(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                          torch.Generator().manual_seed(1))
    x = TotalVariation(TotalVariation.Params(weight=1e30, iterations=40)).restore(
        obs, RestoreContext(generator=torch.Generator()))
    # λ·TV dominates: the result is far flatter than the observation (it once came back bit for bit)
    def tv(img):
        return float(img.diff(dim=-1).abs().mean() + img.diff(dim=-2).abs().mean())

    assert tv(x) < 0.5 * tv(obs.y)


def test_default_tv_weights_are_unchanged_by_the_overflow_guard():
    obs = Noise().degrade(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
                          torch.Generator().manual_seed(1))
    p = TotalVariation.Params(iterations=20)
    x = TotalVariation(p).restore(obs, RestoreContext(generator=torch.Generator()))
    # the same Adam loop without the guard and the 1/max(1, λ) scaling (λ < 1 here)
    from methods.tv import tv_smooth

    lam = p.weight * obs.sigma
    ref = obs.y.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=p.lr)
    for _ in range(p.iterations):
        opt.zero_grad()
        (0.5 * (ref - obs.y).pow(2).sum() + lam * tv_smooth(ref, p.eps)).backward()
        opt.step()
    assert torch.equal(x, ref.detach().clamp(0, 1))


def test_an_optimisation_that_overflows_fails_its_cell_with_the_reason(run_cli, tmp_path):
    code, out, err = smoke_run(run_cli, tmp_path, "--set", "tv.lr=1e30", methods="tv")
    assert code == 1
    assert "failed: tv on noise/astronaut: NumericalError: tv: the" in err
    assert "use smaller parameters" in err
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as db:
        assert db.execute("select count(*) from cells where status = 'ok'").fetchone()[0] == 0


def test_check_finite_step_names_the_state_that_overflowed():
    x = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    (x.sum() * 1e30).backward()
    opt.step()
    with pytest.raises(NumericalError, match="iteration 7 \\(exp_avg_sq is not finite"):
        check_finite_step("m", 7, torch.tensor(0.0), opt)
    with pytest.raises(NumericalError, match="objective is not finite"):
        check_finite_step("m", 0, torch.tensor(float("nan")), torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
