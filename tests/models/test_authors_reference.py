"""Our five models against float64 references written from the authors' code.

`authors_reference` re-implements each model as the authors' code computes it (two
convolutions per gate group, their gate order, their warps, their layer bookkeeping, and
everything they compute without using, filled with NaN) and takes our weights. Same weights,
same inputs: the outputs must agree to float64 rounding. The same comparison shows that it
would catch the deviations an earlier nowcast had, and that each deliberate fix of a bug in the
authors' code (README, "Differences from the authors' code") changes the result.
"""

from __future__ import annotations

import pytest
import torch

from nowcast_cli.models import create_model
from tests.models.authors_reference import authors_weights, rollout

NAMES = ["convlstm", "trajgru", "predrnn", "mim", "motionrnn"]
SIZE, T_IN, N_OUT = 8, 3, 3


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, size=SIZE, layers=3, hidden=8).double()
    with torch.no_grad():  # larger biases than the default init: every gate matters
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(-0.5, 0.5)
    return model


def frames(batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, T_IN, 1, SIZE, SIZE, generator=g, dtype=torch.float64)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_outputs_equal_the_authors_computation(name: str) -> None:
    model = build(name)
    x = frames()
    with torch.no_grad():
        ours = model(x, N_OUT)
    ref = rollout(name, authors_weights(name, model), x, N_OUT)
    assert torch.isfinite(ref).all()  # nothing the authors never use was used (NaN weights)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_mim_first_layer_as_a_full_mim_block_would_be_caught() -> None:
    model = build("mim")
    x = frames()
    with torch.no_grad():
        ours = model(x, N_OUT)
    weights = authors_weights("mim", model, unused="random")
    assert torch.allclose(rollout("mim", weights, x, N_OUT), ours, rtol=1e-10, atol=1e-12)
    deviant = rollout("mim", weights, x, N_OUT, full_mim_first_layer=True)
    assert rel_diff(deviant, ours) > 1e-3


def test_motion_in_the_top_layer_would_be_caught() -> None:
    model = build("motionrnn")
    x = frames()
    with torch.no_grad():
        ours = model(x, N_OUT)
    weights = authors_weights("motionrnn", model, unused="random")
    assert torch.allclose(rollout("motionrnn", weights, x, N_OUT), ours, rtol=1e-10, atol=1e-12)
    deviant = rollout("motionrnn", weights, x, N_OUT, motion_in_top_layer=True)
    assert rel_diff(deviant, ours) > 1e-3


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("trajgru", "align_corners"),
        ("motionrnn", "align_corners"),
        ("motionrnn", "decoder_layout_fix"),
    ],
)
def test_each_deliberate_fix_changes_the_result(name: str, fix: str) -> None:
    model = build(name)
    x = frames(batch=1)
    with torch.no_grad():
        ours = model(x, N_OUT)
    authors = rollout(name, authors_weights(name, model), x, N_OUT, **{fix: False})
    assert rel_diff(authors, ours) > 1e-4


def test_motionrnn_flow_reshape_matters_only_for_batches() -> None:
    model = build("motionrnn")
    weights = authors_weights("motionrnn", model)
    with torch.no_grad():
        one, two = model(frames(batch=1), N_OUT), model(frames(batch=2), N_OUT)
    bug = rollout("motionrnn", weights, frames(batch=1), N_OUT, flow_batch_fix=False)
    torch.testing.assert_close(bug, one, rtol=1e-10, atol=1e-12)  # B = 1: same reshape
    bug = rollout("motionrnn", weights, frames(batch=2), N_OUT, flow_batch_fix=False)
    assert rel_diff(bug, two) > 1e-6  # B = 2: the samples' flows get mixed
