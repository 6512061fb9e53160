"""The training engine: exact resume, Ctrl-C, NaN stop, DDP, logs, checkpoints, the CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nowcast_cli.checkpoint import load_checkpoint, read_checkpoint
from nowcast_cli.cli import app
from nowcast_cli.config import load_config
from nowcast_cli.errors import ConfigError, RunError, TrainingError
from nowcast_cli.samples import make_splits
from nowcast_cli.store import Store
from nowcast_cli.train import configure, fit
from nowcast_cli.training.loop import teacher_mask
from tests.synthetic_store import make_store, regular_times

runner = CliRunner()
TINY = {
    "model": "convlstm",
    "loss": "ff-mse",
    "layers": 1,
    "hidden": 4,
    "size": 8,
    "in_frames": 3,
    "out_frames": 3,
    "batch": 4,
    "stride": 4,
    "epochs": 3,
    "conv": "direct",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # 80 frames in one day: three blocks of windows (train 12 → 3 steps per epoch, valid 2, test 2)
    path = tmp_path_factory.mktemp("train") / "syn.zarr"
    return make_store(path, regular_times("2020-01-01T06:00", 80), size=8)


def _run(store: Path, run: Path, progress=None, **kw) -> object:
    cfg = configure({**TINY, "store": str(store), "run": str(run), **kw})
    return fit(cfg, progress=progress)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.pt")["model_state"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _same_state(a: Path, b: Path) -> None:
    """Two checkpoints hold bitwise the same model, optimizer, generator, step and selection."""
    x, y = read_checkpoint(a), read_checkpoint(b)
    assert x["step"] == y["step"]
    assert x["best"] == y["best"]
    assert all(torch.equal(x["model_state"][k], y["model_state"][k]) for k in x["model_state"])
    assert torch.equal(x["rng"]["torch"], y["rng"]["torch"]), "torch generator state"
    assert torch.equal(x["accumulators"]["train_frames"], y["accumulators"]["train_frames"])
    ox, oy = x["optimizer"], y["optimizer"]
    assert ox["param_groups"] == oy["param_groups"]
    for k, state in ox["state"].items():
        for name, value in state.items():
            other = oy["state"][k][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def test_exact_resume_after_a_cap_and_after_ctrl_c(store: Path, tmp_path: Path) -> None:
    # 3 steps per epoch: stops at step 4 and 5 are inside epoch 2, where no validation runs
    straight = _run(store, tmp_path / "a", max_steps=8, conv="auto")
    assert straight.steps == 8
    assert straight.status == "max-steps"
    assert straight.planned_steps == 9  # 3 epochs × 3 steps: the schedule ignores the cap

    _run(store, tmp_path / "b", max_steps=4, conv="auto")
    assert (
        not (tmp_path / "b" / "best.pt").exists()
        or read_checkpoint(tmp_path / "b" / "best.pt")["step"] == 3
    )
    resumed = fit(configure({"resume": True, "run": str(tmp_path / "b"), "max_steps": 8}))
    assert resumed.steps == 8

    def ctrl_c(event: dict) -> None:  # a real SIGINT after the 5th step
        if event["event"] == "step" and event["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = _run(store, tmp_path / "c", progress=ctrl_c, max_steps=8, conv="auto")
    assert stopped.status == "interrupted"
    assert stopped.steps == 5
    assert read_checkpoint(tmp_path / "c" / "last.pt")["step"] == 5
    fit(configure({"resume": True, "run": str(tmp_path / "c")}))

    a_rows = _rows(tmp_path / "a" / "metrics.csv")
    assert [int(r["step"]) for r in a_rows if r["split"] == "valid"] == [3, 6]
    for run in ("b", "c"):
        _same_state(tmp_path / "a" / "last.pt", tmp_path / run / "last.pt")
        _same_state(tmp_path / "a" / "best.pt", tmp_path / run / "best.pt")
        r_rows = _rows(tmp_path / run / "metrics.csv")
        for col in ("split", "step", "loss", "lr", "grad_norm", "b_mse", "select_score"):
            assert [r[col] for r in a_rows] == [r[col] for r in r_rows], (run, col)
        assert _rows(tmp_path / "a" / "frames.csv") == _rows(tmp_path / run / "frames.csv")
    # the run before the straight one differs: the test can fail
    other = _run(store, tmp_path / "d", max_steps=8, conv="auto", seed=1)
    assert not torch.equal(
        _weights(other.run_dir)["fc.weight"], _weights(straight.run_dir)["fc.weight"]
    )


def test_resume_with_changed_options_names_them(store: Path, tmp_path: Path) -> None:
    _run(store, tmp_path / "r", max_steps=1)
    with pytest.raises(ConfigError, match=r"lr 0\.1 \(run: 0\.0005\); max-missing 1 \(run: 0\)"):
        configure({"resume": True, "run": str(tmp_path / "r"), "lr": 0.1, "max_missing": 1})
    assert configure({"resume": True, "run": str(tmp_path / "r"), "max_steps": 5}).max_steps == 5


def test_frames_csv_matches_an_independent_computation(store: Path, tmp_path: Path) -> None:
    result = _run(store, tmp_path / "f", epochs=1)
    rows = _rows(tmp_path / "f" / "frames.csv")
    assert {r["split"] for r in rows} == {"train", "valid"}
    valid = [r for r in rows if r["split"] == "valid"]
    assert [int(r["frame"]) for r in valid] == list(range(1, 6))
    model, meta = load_checkpoint(result.last_checkpoint)
    assert meta["step"] == 3
    assert meta["conv_backend"] == "direct"
    splits = make_splits(load_config({**TINY}).data, store)
    with Store.open(store) as s:
        frames, ok = s.read(0, len(s), 8)
    idx = splits.valid.frames  # (N, 6)
    x = frames[idx].astype(np.float32) / 255  # (N, 6, 8, 8)
    v = ok[idx][:, 1:]
    with torch.inference_mode():
        pred = model(torch.from_numpy(x[:, :3, None]), 3).numpy()[:, :, 0]
    err = np.abs(pred - x[:, 1:])
    dx = (err * v).sum((2, 3)) / v.sum((2, 3))  # (N, 5) mean |e| over valid pixels
    lo, hi = dx.min(1, keepdims=True), dx.max(1, keepdims=True)
    w = ((dx - lo) / (hi - lo) + 0.01) ** 2
    got_dx = np.array([float(r["delta_x"]) for r in valid])
    got_w = np.array([float(r["weight"]) for r in valid])
    np.testing.assert_allclose(got_dx, dx.mean(0), rtol=1e-5)
    np.testing.assert_allclose(got_w, w.mean(0), rtol=1e-4)
    metrics = _rows(tmp_path / "f" / "metrics.csv")
    assert [r["split"] for r in metrics] == ["train"] * 3 + ["valid"]
    assert float(metrics[-1]["b_mse"]) > 0
    assert metrics[-1]["b_mae"]


def test_scheduled_sampling_decays_linearly_from_one_to_zero_as_the_authors_code(
    store: Path, tmp_path: Path
) -> None:
    """η starts at 1 and loses 1/(epochs × steps per epoch) after every step (the authors'
    code, research notes); off, it is 0 at every step."""
    _run(store, tmp_path / "s")  # 3 epochs × 3 steps
    got = [
        (int(r["step"]), float(r["teacher_prob"]))
        for r in _rows(tmp_path / "s" / "metrics.csv")
        if r["split"] == "train"
    ]
    assert [s for s, _ in got] == list(range(1, 10))
    np.testing.assert_allclose([eta for _, eta in got], [1 - k / 9 for k in range(9)], atol=1e-9)
    _run(store, tmp_path / "o", epochs=1, scheduled_sampling=False)
    rows = _rows(tmp_path / "o" / "metrics.csv")
    assert [float(r["teacher_prob"]) for r in rows if r["split"] == "train"] == [0.0] * 3


def test_teacher_draws_feed_the_true_frame_with_probability_eta() -> None:
    """1.0 = the true frame; P(1) = η; the draws of a step depend on (seed, step) alone."""
    assert teacher_mask(0, 5, 4, 9, 1.0).eq(1).all()
    assert teacher_mask(0, 5, 4, 9, 0.0).eq(0).all()
    n = 4096 * 9
    for eta in (0.1, 0.3, 0.8):
        share = float(teacher_mask(7, 3, 4096, 9, eta).mean())
        assert abs(share - eta) < 5 * (eta * (1 - eta) / n) ** 0.5, (eta, share)
    assert torch.equal(teacher_mask(7, 3, 4, 9, 0.5), teacher_mask(7, 3, 4, 9, 0.5))
    assert not torch.equal(teacher_mask(7, 3, 64, 9, 0.5), teacher_mask(7, 4, 64, 9, 0.5))


def test_each_training_step_rolls_out_with_that_steps_teacher_draws(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollout of step s gets the true frames with the draws at η = 1 − s/planned steps."""
    from nowcast_cli.models import _rollout

    seen: list[object] = []
    real = _rollout.rollout

    def recording(model, x, n_out, *, teacher=None, teacher_prob=0.0, generator=None):
        if teacher is not None:
            seen.append(teacher_prob)
        return real(
            model, x, n_out, teacher=teacher, teacher_prob=teacher_prob, generator=generator
        )

    monkeypatch.setattr(_rollout, "rollout", recording)
    _run(store, tmp_path / "t", epochs=2, max_steps=3, seed=3)  # planned: 6 steps
    assert len(seen) == 3
    for step, prob in enumerate(seen):
        assert torch.is_tensor(prob), step
        assert torch.equal(prob.cpu(), teacher_mask(3, step, 4, 2, 1 - step / 6)), step


def test_non_finite_loss_stops_and_keeps_the_last_good_state(store: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError) as info:
        _run(store, tmp_path / "n", lr=1e30, optimizer="adam", clip_value=0.0)
    msg = str(info.value)
    assert msg.startswith("loss is not finite")
    assert "(epoch 1, batch " in msg
    assert "windows starting 2020-01-01" in msg
    ck = read_checkpoint(tmp_path / "n" / "last.pt")
    assert all(torch.isfinite(t).all() for t in ck["model_state"].values())
    assert f"at step {ck['step'] + 1} " in msg


def test_two_processes_equal_one(store: Path, tmp_path: Path) -> None:
    one = _run(store, tmp_path / "one", max_steps=3, epochs=1)
    two = _run(store, tmp_path / "two", max_steps=3, epochs=1, devices=2)
    assert two.world_size == 2
    assert two.steps == 3
    a, b = _weights(one.run_dir), _weights(two.run_dir)
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
    ra, rb = _rows(one.run_dir / "metrics.csv"), _rows(two.run_dir / "metrics.csv")
    va = [r for r in ra if r["split"] == "valid"]
    vb = [r for r in rb if r["split"] == "valid"]
    assert float(va[0]["loss"]) == pytest.approx(float(vb[0]["loss"]), rel=1e-5)
    # the logged gradient norm is the global batch's, not summed over the processes
    for col in ("loss", "grad_norm"):
        ga = [float(r[col]) for r in ra if r["split"] == "train"]
        gb = [float(r[col]) for r in rb if r["split"] == "train"]
        assert gb == pytest.approx(ga, rel=1e-5), col
    assert _rows(one.run_dir / "frames.csv")[0]["samples"] == "12"
    assert [r["samples"] for r in _rows(two.run_dir / "frames.csv")][:1] == ["12"]


def test_distributed_resume_carries_every_process_frame_sums(store: Path, tmp_path: Path) -> None:
    # epoch 2 = steps 4–6; stop at 4 (mid-epoch), resume to 6: the epoch's ΔX_t sums of both
    # processes must come back, not rank 0's twice
    straight = _run(store, tmp_path / "s", max_steps=6, epochs=2, devices=2)
    _run(store, tmp_path / "r", max_steps=4, epochs=2, devices=2)
    fit(configure({"resume": True, "run": str(tmp_path / "r"), "max_steps": 6}))
    want = [r for r in _rows(straight.run_dir / "frames.csv") if r["epoch"] == "2"]
    got = [r for r in _rows(tmp_path / "r" / "frames.csv") if r["epoch"] == "2"]
    assert [r["samples"] for r in got if r["split"] == "train"] == ["12"] * 5
    assert [r["samples"] for r in got] == [r["samples"] for r in want]
    for a, b in zip(want, got, strict=True):
        assert float(b["delta_x"]) == pytest.approx(float(a["delta_x"]), rel=1e-6)


def test_an_infinite_gradient_stops_the_run_instead_of_being_clipped(
    store: Path, tmp_path: Path
) -> None:
    from nowcast_cli.training.loop import Trainer
    from nowcast_cli.training.plan import make_plan

    plan = make_plan(configure({**TINY, "store": str(store), "run": str(tmp_path / "g")}))
    trainer = Trainer(plan, 0, 1, torch.device("cpu"), None)
    try:
        weight = trainer.model.fc.weight
        weight.register_hook(lambda g: torch.full_like(g, float("inf")))
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        frames, valid = next(iter(trainer.loader()))
        with pytest.raises(TrainingError, match=r"gradient norm inf\) at step 1 "):
            trainer.train_step(frames, valid)
        after = trainer.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # no update was applied
        assert read_checkpoint(tmp_path / "g" / "last.pt")["step"] == 0
    finally:
        for log in trainer.logs.values():
            log.close()


def test_leftover_windows_of_an_epoch_are_counted_as_left_out(store: Path, tmp_path: Path) -> None:
    # 13 training windows in batches of 5: 2 steps of 5 per epoch, 3 windows left out
    result = _run(store, tmp_path / "d", batch=5, epochs=2, max_steps=None)
    assert result.steps == 4
    plan = tomllib.loads((tmp_path / "d" / "config.toml").read_text())["plan"]
    assert (plan["windows_per_epoch"], plan["windows_left_out_per_epoch"]) == (10, 3)
    train = [r for r in _rows(tmp_path / "d" / "frames.csv") if r["split"] == "train"]
    assert {r["samples"] for r in train} == {"10"}


def test_selection_rules_pick_the_weights_their_scores_prefer(store: Path, tmp_path: Path) -> None:
    def valid_rows(run: Path) -> list[dict[str, str]]:
        return [r for r in _rows(run / "metrics.csv") if r["split"] == "valid"]

    for rule, key in (("val-bmse+bmae", None), ("val-csi", "csi"), ("val-loss", "loss")):
        run = tmp_path / rule
        result = _run(store, run, epochs=3, select=rule, lr=0.01, predict=False)
        rows = valid_rows(run)
        assert [int(r["step"]) for r in rows] == [3, 6, 9]
        if key is None:
            score = [float(r["b_mse"]) + float(r["b_mae"]) for r in rows]
        elif key == "csi":
            score = [-float(r["csi"]) for r in rows]
        else:
            score = [float(r[key]) for r in rows]
        assert [float(r["select_score"]) for r in rows] == pytest.approx(score, rel=1e-6)
        best = int(rows[int(np.argmin(score))]["step"])
        assert read_checkpoint(run / "best.pt")["step"] == best == result.best_step
        assert read_checkpoint(run / "best.pt")["best"]["rule"] == rule
        assert tomllib.loads((run / "config.toml").read_text())["select"] == rule
    last = _run(store, tmp_path / "last", epochs=1, select="last", predict=False)
    assert not (tmp_path / "last" / "best.pt").exists()
    assert last.best_checkpoint is None


def test_validation_csi_matches_a_direct_count() -> None:
    from nowcast_cli.training.validation import contingency, csi

    rng = np.random.default_rng(3)
    pred = torch.from_numpy(rng.uniform(-0.1, 1.1, (2, 3, 1, 9, 9)).astype(np.float32))
    obs = torch.from_numpy(rng.integers(0, 256, (2, 3, 1, 9, 9)).astype(np.uint8))
    valid = torch.from_numpy(rng.random((2, 3, 1, 9, 9)) > 0.2)
    events = torch.tensor([40, 120, 255, 256])  # the last cannot be observed
    counts = contingency(pred, obs, valid, events).numpy()
    f = np.floor(np.clip(pred.numpy().astype(np.float64), 0, 1) * 255 + 0.5)[valid.numpy()]
    o = obs.numpy()[valid.numpy()]
    want = []
    for p in (40, 120, 255):
        hit, miss, fa = (
            ((f >= p) & (o >= p)).sum(),
            ((f < p) & (o >= p)).sum(),
            ((f >= p) & (o < p)).sum(),
        )
        assert counts[:, [40, 120, 255].index(p)].tolist() == [hit, miss, fa]
        want.append(hit / (hit + miss + fa))
    assert counts[:, 3].tolist() == [0, 0, 0]
    assert csi(torch.from_numpy(counts)) == pytest.approx(np.mean(want), rel=1e-12)


def test_checkpoint_errors(store: Path, tmp_path: Path) -> None:
    result = _run(store, tmp_path / "k", max_steps=1)
    with pytest.raises(RunError, match="a checkpoint of model 'convlstm', not 'predrnn'"):
        load_checkpoint(result.last_checkpoint, model="predrnn")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="not a readable nowcast checkpoint"):
        load_checkpoint(junk)
    data = read_checkpoint(result.last_checkpoint)
    data["version"] = 99
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(RunError, match="checkpoint format 99"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(ConfigError, match="no parameters to train"):
        _run(store, tmp_path / "p", model="persistence")


def test_config_file_and_command_line(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('model = "predrnn"\nin-frames = 4\nlr = 1\n[data]\npath = "x"\n')
    cfg = load_config({"lr": 0.01}, toml)
    assert (cfg.model, cfg.data.in_frames, cfg.lr) == ("predrnn", 4, 0.01)
    toml.write_text("learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        load_config({}, toml)
    # an option written by hand under a table a run folder records would not apply: refused
    for text, key in (
        ("[data]\nsize = 64\n", "size"),
        ('[split]\ntrain = "2020-01-01:"\n', "train"),
    ):
        toml.write_text(text)
        with pytest.raises(ConfigError, match=rf"{key} = .* under \[.*\] is not an option there"):
            load_config({}, toml)
    # a run's own config.toml (its [data] size is its size; its [split] tables) reads back
    toml.write_text(
        'size = 64\ntrain = "2020-01-01:"\n[data]\nsize = 64\n[split.train]\nwindows = 3\n'
        '[plan]\nscheduled_sampling = "eta = 1 - step / planned_steps"\n'
    )
    assert load_config({}, toml).data.size == 64
    with pytest.raises(ConfigError, match="batch 6 must be a multiple of devices 4"):
        load_config({"batch": 6, "devices": 4})


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return lines[-1]


def test_cli_on_real_dwd_sample(in_tmp: Path, ry_dir: Path) -> None:
    # SPEC §1's first two lines on 13 real RY frames (ingested at 16×16 to stay fast)
    ing = runner.invoke(app, ["ingest", "dwd", str(ry_dir), "--size", "16", "--quiet"])
    assert ing.exit_code == 0, ing.output
    args = ["train", "--model", "convlstm", "--loss", "ff-mse", "--size", "16", "--layers", "1"]
    args += ["--hidden", "4", "--in-frames", "2", "--out-frames", "2", "--batch", "1"]
    res = runner.invoke(app, [*args, "--max-steps", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "max-steps"
    assert out["steps"] == 2
    assert "three contiguous blocks" in out["split_note"]
    run = Path(out["run_dir"])
    assert run.parent == in_tmp / "runs"
    assert run.name.startswith("convlstm-ff-mse-")
    assert {p.name for p in run.iterdir()} >= {
        "config.toml",
        "metrics.csv",
        "frames.csv",
        "last.pt",
    }
    listed = json.loads(runner.invoke(app, ["list", "runs", "--json"]).stdout)
    assert [(r["model"], r["loss"], r["steps"]) for r in listed] == [("convlstm", "ff-mse", 2)]
    info = json.loads(runner.invoke(app, ["info", str(run), "--json"]).stdout)
    assert info["store"].endswith("dwd.zarr")
    assert info["checkpoints"][0] == "last.pt"
    # bad input: one line each
    line = _error_line(runner.invoke(app, [*args, "--in-frames", "12"]))
    assert "has 13 frame(s), at most 13 consecutive, and a window needs 14" in line
    line = _error_line(runner.invoke(app, ["train", "--model", "convlstm", "--loss", "ff-mes"]))
    assert line.startswith("Error: unknown loss 'ff-mes'. Did you mean 'ff-mse'?")
    line = _error_line(runner.invoke(app, ["train", "--model", "convlstn", "--loss", "ff-mse"]))
    assert line.startswith("Error: unknown model 'convlstn'. Did you mean 'convlstm'?")
    line = _error_line(runner.invoke(app, ["train", "--model", "convlstn"]))
    assert line.startswith("Error: unknown model 'convlstn'")  # before "no loss"
    with Store.open(in_tmp / "nowcast-data" / "dwd.zarr") as st:
        assert st.sizes == [16]  # the typos were named before a 120² copy was made
    line = _error_line(runner.invoke(app, ["train", "--resume", "--lr", "1"]))
    assert "options differ from the run's: lr 1.0 (run: 0.0005)" in line


def test_look_ahead_yields_the_source_in_order_while_fetching_the_next_items() -> None:
    import threading

    from nowcast_cli.training.loop import LookAhead

    produced = [threading.Event() for _ in range(6)]

    def source():  # type: ignore[no-untyped-def]
        for i in range(6):
            produced[i].set()
            yield i

    got = []
    for item in LookAhead(source(), depth=2):
        if item + 1 < 6:  # the next item is made while this one is in use
            assert produced[item + 1].wait(5), f"item {item + 1} was not fetched ahead"
        got.append(item)
    assert got == list(range(6))


def test_look_ahead_raises_the_sources_error_and_stops_its_thread_on_an_early_exit() -> None:
    import threading

    from nowcast_cli.training.loop import LookAhead

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        raise TrainingError("cannot read chunk 7")

    it = iter(LookAhead(failing()))
    assert next(it) == 1
    with pytest.raises(TrainingError, match="chunk 7"):
        next(it)

    pulled = []

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            pulled.append(i)
            yield i
            i += 1

    for item in LookAhead(endless(), depth=2):
        if item == 3:
            break
    assert not any(t.name == "nowcast-lookahead" for t in threading.enumerate())
    assert len(pulled) <= 3 + 2 + 2  # at most `depth` ahead (+ the one being put)
