"""RainNet's recursion and SimVP's all-at-once forecast: what each returns, and from what.

SimVP is compared with `simvp_reference`, its forward pass written from the authors' code;
RainNet with the authors' Keras model in ``test_rainnet_keras.py``.
"""

from __future__ import annotations

import pytest
import torch

from nowcast_cli.errors import ConfigError
from nowcast_cli.models import create_model
from tests.models.simvp_reference import simvp as simvp_reference

SIZE, BATCH = 16, 2


def frames(t: int, batch: int = BATCH, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, t, 1, size, size, generator=g, dtype=torch.float64)


def rainnet(seed: int = 0, **kw: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("rainnet", **{"hidden": 4, "layers": 2, "size": SIZE, **kw}).double().eval()


def simvp(seed: int = 0, **kw: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = {"hidden": 8, "layers": 2, "size": SIZE, "in_frames": 4, **kw}
    model = create_model("simvp", **cfg).double().eval()
    with torch.no_grad():  # biases and norm shifts away from 0 and 1: every parameter matters
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(-0.5, 0.5)
    return model


# -- SimVP ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg",
    [
        {},  # N_S 4, N_T 2
        {"layers": 3, "spatial_layers": 3, "in_frames": 3},  # odd N_S: strides 1, 2, 1
        {"hidden": 6, "translator_ratio": 2, "groups": 4},  # hid_T/2 = 6: 4 groups fall back to 1
    ],
)
def test_simvp_equals_the_authors_computation(cfg: dict[str, int]) -> None:
    model = simvp(**cfg)
    c = model.config
    x = frames(c.in_frames)
    with torch.no_grad():
        ours = model(x, c.in_frames)
    weights = [p.detach() for p in model.parameters()]
    ref = simvp_reference(weights, x, c.spatial_layers, c.layers, c.groups)
    assert ref.abs().max() > 0.01
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_simvp_fewer_or_more_frames_than_it_makes_at_once() -> None:
    model = simvp()
    x = frames(4)
    with torch.no_grad():
        once = model.translate(x)  # (B, 4, …): X̂_4 .. X̂_7
        twice = model.translate(once)  # applied again to its own outputs (OpenSTL)
        torch.testing.assert_close(model(x, 3), once[:, :3], rtol=0, atol=0)
        torch.testing.assert_close(model(x, 6), torch.cat([once, twice[:, :2]], 1), rtol=0, atol=0)


def test_simvp_ignores_the_teacher() -> None:
    model = simvp()
    x = frames(4)
    poisoned = torch.full((BATCH, 5, 1, SIZE, SIZE), torch.nan, dtype=torch.float64)
    with torch.no_grad():
        free = model(x, 6)
        forced = model(x, 6, teacher=poisoned, teacher_prob=1.0)
    assert torch.equal(free, forced)


def test_simvp_needs_the_frames_it_was_built_for() -> None:
    with pytest.raises(ConfigError, match="built for 4 observed frames, got 5"):
        simvp()(frames(5), 2)


# -- RainNet ----------------------------------------------------------------------------------
def test_rainnet_recursion_written_by_hand() -> None:
    model = rainnet()
    x = frames(6)
    with torch.no_grad():
        out = model(x, 3)
        seq = list(x.unbind(1))
        for _ in range(3):  # each step: the last 4 frames of the sequence, its output appended
            seq.append(model.step(torch.cat(seq[-4:], 1)))
    torch.testing.assert_close(out, torch.stack(seq[6:], 1), rtol=0, atol=0)


def test_rainnet_teacher_always_is_one_step_training_on_every_lead() -> None:
    """teacher_prob = 1: lead j reads true frames only, X̂_{m+j} from X_{m+j−4} .. X_{m+j−1}."""
    model = rainnet()
    m, n = 5, 4
    x = frames(m + n)
    with torch.no_grad():
        forced = model(x[:, :m], n, teacher=x[:, m:], teacher_prob=1.0)
        for j in range(n):
            one_step = model(x[:, : m + j], 1)[:, 0]
            torch.testing.assert_close(forced[:, j], one_step, rtol=0, atol=0)


def test_rainnet_scheduled_sampling_written_by_hand() -> None:
    model = rainnet()
    b, m, n = 4, 4, 5
    x = frames(m + n - 1, batch=b)
    with torch.no_grad():
        out = model(
            x[:, :m], n, teacher=x[:, m:], teacher_prob=0.5,
            generator=torch.Generator().manual_seed(11),
        )  # fmt: skip
        use_true = torch.rand((b, n - 1), generator=torch.Generator().manual_seed(11)) < 0.5
        assert use_true.any()
        assert not use_true.all()
        seq, preds = list(x[:, :m].unbind(1)), []
        for s in range(n):
            if s > 0:
                pick = use_true[:, s - 1].view(b, 1, 1, 1)
                seq.append(torch.where(pick, x[:, m + s - 1], preds[-1]))
            preds.append(model.step(torch.cat(seq[-4:], 1)))
    torch.testing.assert_close(out, torch.stack(preds, 1), rtol=0, atol=0)


def test_rainnet_dropout_is_on_in_training_only() -> None:
    x = frames(4)
    model = rainnet()
    with torch.no_grad():
        evaluated = model(x, 2)
        model.train()
        torch.manual_seed(0)
        a = model(x, 2)
        b = model(x, 2)
    assert not torch.equal(a, b)  # dropout 0.5 on the two deepest levels
    assert not torch.equal(a, evaluated)
    plain = rainnet(dropout=0.0).train()
    with torch.no_grad():
        torch.testing.assert_close(plain(x, 2), plain.eval()(x, 2), rtol=0, atol=0)


def test_rainnet_pads_to_its_grid_and_crops_back() -> None:
    model = rainnet(size=18)  # two levels: a 20² grid, 1 pixel of reflection on each side
    x = frames(4, size=18)
    with torch.no_grad():
        out = model(x, 2)
    assert out.shape == (BATCH, 2, 1, 18, 18)
    assert torch.isfinite(out).all()


def test_rainnet_errors() -> None:
    with pytest.raises(ConfigError, match="needs --in-frames ≥ 4, got 3"):
        rainnet()(frames(3), 1)
    with pytest.raises(ConfigError, match="needs --in-frames ≥ 4, got 3"):
        create_model("rainnet", in_frames=3)  # what `nowcast train` checks before it starts
    with pytest.raises(ConfigError, match="too small for 4 pooling levels"):
        create_model("rainnet", size=4)
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        create_model("rainnet", dropout=1.0)


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("rainnet", {"kernel": 2}, "odd"),
        ("rainnet", {"hidden": 0}, "positive"),
        ("simvp", {"size": 30}, "multiple of 4"),
        ("simvp", {"layers": 1}, "layers"),
        ("simvp", {"hidden": 7}, "even"),
        ("simvp", {"hidden": 2, "translator_ratio": 6, "groups": 3}, "20 output channels"),
    ],
)
def test_invalid_configs(name: str, bad: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model(name, **bad)
