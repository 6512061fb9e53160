"""Contract tests run over every registered model, at a small size so they stay fast on CPU."""

from __future__ import annotations

import io

import pytest
import torch

from nowcast_cli.errors import ConfigError, UnknownNameError
from nowcast_cli.models import MODELS, create_model, first_output, list_models
from nowcast_cli.models import motionrnn as motionrnn_module

NAMES = MODELS.names()
RECURRENT = [n for n in NAMES if MODELS.get(n).reconstructs]
SIZE, T_IN, N_OUT, BATCH = 16, 4, 3, 2


def small(name: str) -> dict[str, int]:
    """A small configuration of model `name` (persistence has only a frame shape)."""
    if name == "persistence":
        return {"size": SIZE}
    if name == "simvp":
        return {"layers": 2, "hidden": 8, "size": SIZE, "in_frames": T_IN}
    return {"layers": 2, "hidden": 8, "size": SIZE}


def build(name: str, seed: int = 0, **extra: int) -> torch.nn.Module:
    """A small model in eval mode (RainNet's dropout would make outputs random)."""
    torch.manual_seed(seed)
    return create_model(name, **small(name), **extra).eval()


def out_frames(name: str, n: int = N_OUT) -> int:
    """Frames a model returns for T_IN observed frames and n forecasts."""
    return T_IN + n - first_output(MODELS.get(name), T_IN)


def frames(batch: int = BATCH, t: int = T_IN, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, t, 1, SIZE, SIZE, generator=g)


def test_registry_holds_the_eight_models() -> None:
    assert NAMES == [
        "convlstm", "mim", "motionrnn", "persistence", "predrnn", "rainnet", "simvp", "trajgru",
    ]  # fmt: skip
    assert RECURRENT == ["convlstm", "mim", "motionrnn", "persistence", "predrnn", "trajgru"]


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_finite(name: str) -> None:
    out = build(name)(frames(), N_OUT)
    recurrent = name in RECURRENT
    assert out.shape == (BATCH, T_IN + N_OUT - 1 if recurrent else N_OUT, 1, SIZE, SIZE)
    assert out_frames(name) == out.shape[1]
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = build(name)
    params = dict(model.named_parameters())
    if name == "persistence":
        assert params == {}
        return
    model(frames(), N_OUT).square().mean().backward()
    for pname, p in params.items():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name: str) -> None:
    a, b = build(name, seed=7), build(name, seed=7)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb)
    x = frames()
    assert torch.equal(a(x, N_OUT), b(x, N_OUT))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    model = build(name, seed=3)
    buf = io.BytesIO()
    torch.save({"model": name, "state_dict": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    other = build(ckpt["model"], seed=4)  # different init, overwritten by the load
    other.load_state_dict(ckpt["state_dict"])
    x = frames()
    assert torch.equal(model(x, N_OUT), other(x, N_OUT))


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_samples_one_by_one(name: str) -> None:
    model = build(name).double()
    x = frames().double()
    together = model(x, N_OUT)
    apart = torch.cat([model(x[i : i + 1], N_OUT) for i in range(BATCH)])
    torch.testing.assert_close(together, apart, rtol=1e-10, atol=1e-12)


def test_motionrnn_batch_test_catches_the_authors_flow_reshape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the authors' (k², B, 2, h, w) reshape, a batch of two differs from two of one."""
    real_warp = motionrnn_module.warp

    def authors_warp(image, flows, grid, scale):  # type: ignore[no-untyped-def]
        b, n, _, h, w = flows.shape
        wrong = flows.reshape(b, 2 * n, h, w).reshape(n, b, 2, h, w).transpose(0, 1)
        return real_warp(image, wrong, grid, scale)

    model = build("motionrnn").double()
    x = frames().double()
    apart = torch.cat([model(x[i : i + 1], N_OUT) for i in range(BATCH)])
    monkeypatch.setattr(motionrnn_module, "warp", authors_warp)
    assert not torch.allclose(model(x, N_OUT), apart, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", RECURRENT)
def test_teacher_always_equals_rolling_over_true_frames(name: str) -> None:
    """teacher_prob = 1 feeds X_m .. X_{m+n−2}: same as observing them all."""
    model = build(name)
    x = frames(t=T_IN + N_OUT)
    forced = model(x[:, :T_IN], N_OUT, teacher=x[:, T_IN:], teacher_prob=1.0)
    observed = model(x[:, : T_IN + N_OUT - 1], 1)
    torch.testing.assert_close(forced, observed, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_teacher_never_reads_the_teacher(name: str) -> None:
    """teacher_prob = 0: the teacher is never read (a NaN teacher leaves no trace)."""
    model = build(name)
    x = frames(t=T_IN + N_OUT)
    poisoned = torch.full_like(x[:, T_IN:], torch.nan)
    free = model(x[:, :T_IN], N_OUT)
    for p in (0.0, torch.zeros(BATCH, N_OUT - 1)):
        out = model(x[:, :T_IN], N_OUT, teacher=poisoned, teacher_prob=p)
        assert torch.equal(out, free)


@pytest.mark.parametrize("name", ["convlstm", "mim"])
def test_scheduled_sampling_equals_a_rollout_written_by_hand(name: str) -> None:
    """Each (sample, future step) reads the true frame iff its Bernoulli draw says so."""
    model = build(name)
    b, n_out = 4, 5
    x = frames(batch=b, t=T_IN + n_out - 1)
    out = model(
        x[:, :T_IN],
        n_out,
        teacher=x[:, T_IN:],
        teacher_prob=0.5,
        generator=torch.Generator().manual_seed(11),
    )
    use_true = torch.rand((b, n_out - 1), generator=torch.Generator().manual_seed(11)) < 0.5
    assert use_true.any()
    assert not use_true.all()
    with torch.no_grad():
        state = model.init_state(x)
        preds = []
        for s in range(T_IN + n_out - 1):
            if s < T_IN:
                frame = x[:, s]
            else:
                pick = use_true[:, s - T_IN].view(b, 1, 1, 1)
                frame = torch.where(pick, x[:, s], preds[-1])
            pred, state = model.step(frame, state)
            preds.append(pred)
    torch.testing.assert_close(out.detach(), torch.stack(preds, 1), rtol=0, atol=0)


def test_scheduled_sampling_is_reproducible_under_a_generator() -> None:
    model = build("convlstm")
    x = frames(batch=4, t=T_IN + 4)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return model(x[:, :T_IN], 5, teacher=x[:, T_IN:], teacher_prob=0.5, generator=g)

    assert torch.equal(run(11), run(11))
    assert not torch.equal(run(11), run(12))


def test_teacher_prob_as_tensor() -> None:
    model = build("convlstm")
    x = frames(t=T_IN + N_OUT)
    forced = model(x[:, :T_IN], N_OUT, teacher=x[:, T_IN:], teacher_prob=torch.tensor(1.0))
    torch.testing.assert_close(forced, model(x[:, : T_IN + N_OUT - 1], 1), rtol=0, atol=0)


def test_persistence_repeats_the_last_observed_frame() -> None:
    model = build("persistence")
    x = frames()
    out = model(x, N_OUT)
    assert torch.equal(out[:, :T_IN], x)  # X̂_{t+1} = X_t: the observed frames, one step on
    for j in range(N_OUT):
        assert torch.equal(out[:, T_IN - 1 + j], x[:, -1])
    assert next(model.buffers()).device == x.device  # has a device for .to() and callers


def test_create_model_rejects_unknown_option_and_lists_fields() -> None:
    with pytest.raises(ConfigError, match=r"'depth'.*valid options: channels, size, layers"):
        create_model("convlstm", depth=3)


def test_create_model_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="convlstm"):
        create_model("convlstn")


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("convlstm", {"kernel": 4}),
        ("predrnn", {"hidden": 0}),
        ("motionrnn", {"size": 15}),
        ("motionrnn", {"hidden": 10}),
        ("trajgru", {"flow_kernel": 4}),
        ("mim", {"layers": 2.5}),
    ],
)
def test_invalid_config_values(name: str, bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        create_model(name, **bad)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_frame_size_is_a_config_error(name: str) -> None:
    model = build(name)
    with pytest.raises(ConfigError, match="built for"):
        model(torch.zeros(1, T_IN, 1, SIZE + 2, SIZE + 2), 1)


def test_teacher_of_wrong_length_is_rejected() -> None:
    model = build("convlstm")
    x = frames(t=T_IN + 1)
    with pytest.raises(ConfigError, match="teacher"):
        model(x[:, :T_IN], 3, teacher=x[:, T_IN:], teacher_prob=0.5)


def test_list_models_rows() -> None:
    rows = list_models()
    assert [r["name"] for r in rows] == NAMES
    for r in rows:
        assert set(r) == {"name", "params", "paper_params", "description"}
        assert type(r["params"]) is int
        assert r["description"]
        assert "\n" not in r["description"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["persistence"]["params"] == 0
    assert by_name["persistence"]["paper_params"] is None
    assert by_name["mim"]["paper_params"] == 3.68e6
    for name in ("rainnet", "simvp"):  # the authors' code at their defaults: exactly ours
        assert by_name[name]["paper_params"] == by_name[name]["params"], name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_gpu_matches_cpu(name: str) -> None:
    model = build(name)
    x = frames()
    cpu = model(x, N_OUT)
    gpu = model.cuda()(x.cuda(), N_OUT).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in RECURRENT if n != "persistence"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")
def test_a_cell_compiles_into_one_graph(name: str) -> None:
    # `--compile` compiles each cell; a graph break per convolution (reading the backend
    # setting, or the Winograd kernels) made compiled cells no faster than eager ones
    import torch._dynamo as dynamo

    model = build(name)
    cell, calls = model.cells[1], []
    forward = cell.forward
    cell.forward = lambda *a, **k: calls.append((a, k)) or forward(*a, **k)
    with torch.no_grad():
        model(frames(), N_OUT)
    cell.forward = forward
    args, kwargs = calls[1]  # a step with a state from the step before
    dynamo.reset()
    explained = dynamo.explain(cell)(*args, **kwargs)
    dynamo.reset()
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
