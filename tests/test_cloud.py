"""Stores on object storage: the whole chain on s3:// against a real S3 server, and its faults.

The server is moto's S3 emulator over HTTP (`tests.s3_server`), started on a free port by the
`s3` fixture; nowcast reaches it through zarr's FsspecStore and s3fs, configured only by the
standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``…), as users configure it
for AWS, MinIO or any S3-compatible service.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nowcast_cli.checkpoint import read_checkpoint
from nowcast_cli.cli import app
from nowcast_cli.store import Store

pytest.importorskip("s3fs", reason="the cloud extra (s3fs) is not installed")
pytest.importorskip("moto.server", reason="the S3 emulator (moto[server]) is not installed")

from tests.s3_server import BUCKET, S3Server, close_clients

runner = CliRunner()
SAMPLE_RY = Path(__file__).resolve().parents[1] / "sample_data" / "dwd" / "ry_20200101_seq13"
#: fail fast: 1 s timeouts, 2 attempts per call (botocore) and 2 tries (s3fs), instead of the
#: defaults' 60 s timeouts and 3 × 5 × 5 attempts
FAST = {
    "config_kwargs": {
        "connect_timeout": 1,
        "read_timeout": 1,
        "retries": {"max_attempts": 1, "mode": "standard"},  # 1 retry
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    from moto import settings

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    srv = S3Server()
    srv.start()
    try:
        srv.enable_auth()
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv
    finally:
        srv.stop()
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before


@pytest.fixture
def s3(server: S3Server, monkeypatch: pytest.MonkeyPatch, request) -> Iterator[S3Server]:
    """The server, this test's environment pointing at it, and fast-failing s3fs settings."""
    import fsspec.config

    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setitem(fsspec.config.conf, "s3", FAST)
    monkeypatch.setattr("s3fs.S3FileSystem.retries", 2)  # a class setting, not an option
    close_clients()  # a cached client keeps its credentials
    server.stall = server.on_request = None
    server.requests.clear()
    yield server
    server.stall = server.on_request = None
    if server._server is None:
        server.start()
    close_clients()


def _url(request: pytest.FixtureRequest, name: str) -> str:
    return f"s3://{BUCKET}/{request.node.name}/{name}"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _same_store(a: str | Path, b: str | Path, size: int) -> None:
    with Store.open(a) as x, Store.open(b) as y:
        assert len(x) == len(y) > 0
        np.testing.assert_array_equal(x.times, y.times)
        for s in (None, size):
            fx, vx = x.read(0, len(x), s)
            fy, vy = y.read(0, len(y), s)
            np.testing.assert_array_equal(fx, fy)
            np.testing.assert_array_equal(vx, vy)
        assert x.uncommitted() == y.uncommitted() == 0


TRAIN = ["--model", "convlstm", "--loss", "ff-mse", "--layers", "1", "--hidden", "4"]
TRAIN += ["--size", "30", "--in-frames", "2", "--out-frames", "2", "--stride", "1"]
TRAIN += ["--batch", "2", "--epochs", "1", "--max-steps", "2", "--conv", "direct"]


def test_whole_chain_on_s3_equals_the_chain_on_a_folder(
    s3: S3Server, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(request, "dwd.zarr")
    fc_url = _url(request, "forecasts.zarr")
    for target in ("local.zarr", url):
        _ok(["ingest", "dwd", str(SAMPLE_RY), "--out", target, "--size", "30", "--quiet"])
    _same_store("local.zarr", url, 30)
    stored = s3.objects(request.node.name)
    assert any(k.endswith("dwd.zarr/coarse/30/frames/c/0/0/0") for k in stored)

    _ok(["train", *TRAIN, "--store", "local.zarr", "--run", "runs/local", "--quiet"])
    _ok(["train", *TRAIN, "--store", url, "--run", "runs/s3", "--quiet"])
    a, b = read_checkpoint(Path("runs/local/last.pt")), read_checkpoint(Path("runs/s3/last.pt"))
    assert a["step"] == b["step"] >= 1
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert b["data"]["store"] == url  # the URL is recorded as given, not as a local path

    pred = ["predict", "--split", "train", "--quiet"]
    _ok([*pred, "--run", "runs/local", "--out", "runs/local/fc.zarr"])
    _ok([*pred, "--run", "runs/s3", "--out", fc_url])
    from nowcast_cli.store import ForecastStore

    with ForecastStore.open("runs/local/fc.zarr") as x, ForecastStore.open(fc_url) as y:
        assert len(x) == len(y) > 0
        np.testing.assert_array_equal(x.issue_times, y.issue_times)
        np.testing.assert_array_equal(x.read(0, len(x)), y.read(0, len(y)))
        assert y.observation_path() == url

    _ok(["verify", "runs/local/fc.zarr", "--quiet"])
    _ok(["verify", fc_url, "--quiet"])  # a URL has no folder: scores go to the working dir
    local_rows = list(csv.DictReader(Path("runs/local/scores.csv").read_text().splitlines()))
    s3_rows = list(csv.DictReader(Path("scores.csv").read_text().splitlines()))
    assert local_rows == s3_rows
    assert len(s3_rows) > 10

    info = json.loads(_ok(["info", url, "--json"]))
    assert info["frames"] == 13
    assert info["path"] == url

    # credentials come from the environment only: never in a run folder, a store or a log
    secrets = [s3.secret.encode(), s3.key_id.encode()]
    for f in [*Path("runs").rglob("*"), Path("scores.json"), Path("scores.csv")]:
        if f.is_file():
            data = f.read_bytes()
            assert not any(s in data for s in secrets), f
    for key, data in s3.objects(request.node.name).items():
        assert not any(s in data for s in secrets), key


def _ry_files(folder: Path, n: int, start: int = 1_577_836_800) -> list[Path]:
    """n gzip RY files re-stamped from the 13 bundled frames, 5 minutes apart."""
    seeds = [gzip.decompress(p.read_bytes()) for p in sorted(SAMPLE_RY.iterdir())]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        t = time.gmtime(start + 300 * i)
        data = bytearray(seeds[i % len(seeds)])
        data[2:8] = time.strftime("%d%H%M", t).encode()
        data[13:17] = time.strftime("%m%y", t).encode()
        p = folder / f"raa01-ry_10000-{time.strftime('%y%m%d%H%M', t)}-dwd---bin.gz"
        p.write_bytes(gzip.compress(bytes(data), compresslevel=1))
        out.append(p)
    return out


def test_server_stopped_mid_ingest_then_resume_loses_and_doubles_nothing(
    s3: S3Server, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    raw = in_tmp / "raw"
    _ry_files(raw, 80)  # appends of 32 frames: the server goes away inside the second
    url = _url(request, "dwd.zarr")
    puts = []

    def count(method: str, path: str) -> None:
        if method == "PUT" and "/frames/c/" in path and "/coarse/" not in path:
            puts.append(path)
            if len(puts) == 6:  # the 2nd chunk of the 2nd append of full frames
                s3.stop_soon()

    s3.on_request = count
    args = ["ingest", "dwd", str(raw), "--out", url, "--size", "30", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"Error: {url}: "), result.output
    assert "Traceback" not in result.output
    assert s3._server is None  # the server really was stopped mid-ingest

    s3.on_request = None
    s3.start()  # back on the same port, with what it had stored
    with Store.open(url) as st:
        assert 0 < len(st) < 80  # the first append was committed, the rest was not
    _ok([*args, "--quiet"])
    _ok(["ingest", "dwd", str(raw), "--out", "local.zarr", "--size", "30", "--quiet"])
    _same_store("local.zarr", url, 30)
    with Store.open(url) as st:
        assert len(st) == 80
        assert len(np.unique(st.times)) == 80


def test_read_timeout_while_training_retries_then_says_so(
    s3: S3Server, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    from tests.synthetic_store import make_store, regular_times

    url = _url(request, "syn.zarr")
    make_store(url, regular_times("2020-01-01T06:00", 80), size=8)  # written through s3fs
    stalled: list[str] = []

    def stall(method: str, path: str) -> float:
        if method == "GET" and "/coarse/8/" in path and "/c/" in path:
            stalled.append(path)
            return 3.0  # longer than the 1 s read timeout
        return 0.0

    s3.stall = stall
    tiny = ["--model", "convlstm", "--loss", "mse", "--layers", "1", "--hidden", "4"]
    tiny += ["--size", "8", "--in-frames", "3", "--out-frames", "3", "--batch", "4"]
    t0 = time.perf_counter()
    result = runner.invoke(app, ["train", *tiny, "--store", url, "--run", "run", "--quiet"])
    took = time.perf_counter() - t0
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {url}: cannot read"), result.output
    assert "timed out" in line, result.output
    assert "Traceback" not in result.output
    # the same chunk was asked for again after the first timeout: the client retried
    assert len(stalled) > len(set(stalled)), stalled
    assert took < 30


def test_wrong_credentials_are_one_line(
    s3: S3Server, in_tmp: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url(request, "dwd.zarr")
    _ok(["ingest", "dwd", str(SAMPLE_RY), "--out", url, "--size", "30", "--quiet"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    for args in (
        ["info", url],
        ["ingest", "dwd", str(SAMPLE_RY), "--out", url],
        ["train", *TRAIN, "--store", url],
    ):
        close_clients()
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        out = result.output.strip()
        assert len(out.splitlines()) == 1, out
        assert out.startswith(f"Error: {url}: access denied"), out
        assert "AWS_SECRET_ACCESS_KEY" in out
        assert "not-the-secret" not in out


def test_urls_with_credentials_and_run_folders_on_urls_are_refused(in_tmp: Path) -> None:
    result = runner.invoke(app, ["info", "https://user:hunter2@example.org/x.zarr"])
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert "credentials in a URL" in result.output
    result = runner.invoke(app, ["train", *TRAIN, "--store", "x.zarr", "--run", "s3://b/run"])
    assert result.exit_code == 1
    assert "run folders are local folders" in result.output


def test_a_missing_cloud_extra_names_it(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    registry = importlib.import_module("fsspec.registry")  # `fsspec.registry` is a mapping
    monkeypatch.setitem(sys.modules, "s3fs", None)  # `import s3fs` fails, as without the extra
    monkeypatch.delitem(registry._registry, "s3", raising=False)
    result = runner.invoke(app, ["info", "s3://bucket/x.zarr"])
    assert result.exit_code == 1
    out = result.output.strip()
    assert len(out.splitlines()) == 1, out
    assert "pip install 'nowcast[cloud]'" in out, out
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "\0") not in out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_under_torchrun_from_s3_equal_one_process(
    s3: S3Server, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    """`torchrun --nnodes 2 --nproc-per-node 1` twice (two nodes on this machine, rendezvous
    on localhost), both training from the S3 store, equals one process on the same global
    batch within the DDP test's tolerance; node 1 runs in another folder (it writes nothing)."""
    import subprocess
    import sys

    from nowcast_cli.train import configure, fit
    from tests.synthetic_store import make_store, regular_times

    url = _url(request, "syn.zarr")
    make_store(url, regular_times("2020-01-01T06:00", 80), size=8)
    opts = {"model": "convlstm", "loss": "ff-mse", "layers": 1, "hidden": 4, "size": 8}
    opts |= {"in_frames": 3, "out_frames": 3, "batch": 4, "stride": 4, "epochs": 1}
    opts |= {"max_steps": 3, "conv": "direct", "store": url}
    one = fit(configure({**opts, "run": str(in_tmp / "one")}))

    import tomli_w

    # every option in a file: torchrun's own parser would take `--run` for its `--run-path`
    (in_tmp / "two.toml").write_text(tomli_w.dumps({**opts, "run": "two"}))
    port = _free_port()
    env = {**os.environ, **s3.env(), "FSSPEC_S3": json.dumps(FAST), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    procs = []
    for node in (0, 1):
        cwd = in_tmp / f"node{node}"
        cwd.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
        cmd += ["--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "nowcast"]
        cmd += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-conf", f"is_host={1 - node}"]
        cmd += ["-m", "nowcast_cli", "train", "--config", str(in_tmp / "two.toml"), "--quiet"]
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    two = in_tmp / "node0" / "two"
    assert not (in_tmp / "node1" / "two").exists()  # rank 1 writes no run folder
    a = read_checkpoint(one.run_dir / "last.pt")
    b = read_checkpoint(two / "last.pt")
    assert a["step"] == b["step"] == 3
    for k in a["model_state"]:
        assert torch.allclose(a["model_state"][k], b["model_state"][k], rtol=1e-5, atol=1e-6), k
    cfg = (two / "config.toml").read_text()
    assert "world_size = 2" in cfg
    assert url in cfg
    assert s3.secret not in cfg
