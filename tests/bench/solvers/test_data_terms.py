"""The shared data terms (bench.solvers.data_terms): Gaussian and JPEG quantisation constraint."""

from __future__ import annotations

import pytest
import torch

from bench.api import RestoreContext
from bench.solvers.data_terms import QCS_TRACE_KEY, data_fidelity, log_data_term
from degradations.jpeg import Jpeg
from degradations.multi import Multi
from degradations.noise import Noise


def image(size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.nn.functional.interpolate(
        torch.rand(1, 3, 5, 5, generator=g), size=(size, size), mode="bicubic"
    ).clamp(0, 1)


def test_qcs_term_is_zero_at_the_clean_image_but_not_at_a_flat_one():
    clean = image()
    obs = Jpeg(Jpeg.Params(quality=10)).degrade(clean, torch.Generator().manual_seed(0))
    assert float(data_fidelity(obs, clean, "qcs")) < 5.0  # the encoder's input is in its own cells
    assert float(data_fidelity(obs, torch.full_like(clean, 0.5), "qcs")) > 100 * max(
        1.0, float(data_fidelity(obs, clean, "qcs"))
    )
    # the Gaussian term does not vanish at the clean image: it counts the JPEG error as noise
    assert float(data_fidelity(obs, clean, "operator")) > float(data_fidelity(obs, clean, "qcs"))


def test_multi_constrains_the_blurred_image_with_the_noise_level():
    clean = image()
    obs = Multi().degrade(clean, torch.Generator().manual_seed(0))
    assert obs.operator.quantization.sigma == pytest.approx(10 / 255)
    assert float(data_fidelity(obs, clean, "qcs")) < float(data_fidelity(obs, torch.full_like(clean, 0.5), "qcs"))


def test_qcs_falls_back_to_the_gaussian_term_without_a_jpeg_file():
    clean = image()
    obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
    assert float(data_fidelity(obs, clean, "qcs")) == float(data_fidelity(obs, clean, "operator"))
    ctx = RestoreContext(generator=torch.Generator())
    assert not log_data_term(ctx, obs, "qcs", 1.0) and ctx.trace == {}


def test_the_trace_records_the_qcs_width_and_a_caption_note():
    obs = Jpeg().degrade(image(), torch.Generator().manual_seed(0))
    ctx = RestoreContext(generator=torch.Generator())
    assert log_data_term(ctx, obs, "qcs", 0.5) and ctx.trace[QCS_TRACE_KEY] == [0.5]
    (note,) = ctx.trace["caption_notes"]
    assert note.startswith("JPEG data term: the quantisation cells of the JPEG file (width 0.5 of the step)")
    plain = RestoreContext(generator=torch.Generator())
    assert not log_data_term(plain, obs, "operator", 0.5) and plain.trace == {}
    with pytest.raises(ValueError, match="data term"):
        data_fidelity(obs, image(), "l1")  # type: ignore[arg-type]


def test_reports_caption_what_the_cells_said_without_knowing_the_method():
    import json

    import pandas as pd

    from bench.annotations import caption_note_lines

    obs = Jpeg().degrade(image(), torch.Generator().manual_seed(0))
    ctx = RestoreContext(generator=torch.Generator())
    log_data_term(ctx, obs, "qcs", 0.5)
    df = pd.DataFrame({"method_label": ["flowprior", "tv"], "degradation_label": ["jpeg", "jpeg"],
                       "trace": [json.dumps(ctx.trace), None], "status": ["ok", "ok"]})
    (line,) = caption_note_lines(df, df["status"])
    assert line.startswith("flowprior (jpeg): JPEG data term: the quantisation cells")
