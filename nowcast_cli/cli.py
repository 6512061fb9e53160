"""The `nowcast` command line: thin commands over the library (STYLE §7.3).

Heavy modules (numpy, zarr, torch) are imported inside the commands so that ``nowcast --help``
and ``nowcast --version`` answer at once. Every `NowcastError` becomes one line ``Error: …`` on
stderr and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from nowcast_cli import __version__
from nowcast_cli import _display as show
from nowcast_cli.errors import NowcastError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="nowcast",
    help="Precipitation nowcasting: radar archives in, trained nowcasts and verification out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)
list_app = typer.Typer(
    help="List sources, stores, runs and other registered names.", no_args_is_help=True
)
app.add_typer(list_app, name="list")


def run() -> None:
    """The ``nowcast`` executable: the app, then an exit without the interpreter's teardown.

    Python's exit waits for non-daemon threads, runs the exit handlers and flushes the standard
    streams, then frees every object of every module. That last part took 0.3 s after a 1.3 s
    ``nowcast verify`` here (numba's compiled kernels and type registries are a large graph),
    and every file is closed by then; so this does the first three and ends the process
    (`os._exit`) with the command's exit code.
    """
    import atexit
    import contextlib
    import sys
    import threading

    try:
        app(prog_name="nowcast")
        code = 0
    except SystemExit as exc:  # how the app always ends (click's standalone mode)
        code = _exit_code(exc.code)
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`nowcast … | head`) or stream: nothing more can be written to it
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    """The process exit status `sys.exit(code)` gives (a message: printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    typer.echo(str(code), err=True)
    return 1


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


def handle_errors(fn: F) -> F:
    """Turn library errors into ``Error: …`` and exit code 1 (the CLI's one error boundary)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NowcastError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; work committed so far is kept (re-run to resume)") from None

    return wrapper  # type: ignore[return-value]


class _State:
    quiet = False
    as_json = False


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]


def _modes(quiet: bool, as_json: bool) -> None:
    """Per-command --quiet/--json add to the global ones."""
    _State.quiet = _State.quiet or quiet
    _State.as_json = _State.as_json or as_json


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nowcast {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print results as JSON (for scripts).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Precipitation nowcasting: radar archives in, trained nowcasts and verification out."""
    _State.quiet = quiet
    _State.as_json = as_json
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# -- ingest --------------------------------------------------------------------------------------
@app.command()
@handle_errors
def ingest(
    source: Annotated[str, typer.Argument(help="Radar source (see `nowcast list sources`).")],
    raw: Annotated[
        list[Path], typer.Argument(help="Files or directories to ingest.", show_default=False)
    ],
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Store (folder or s3://, gs:// URL) to create or extend. "
            "[default: ./nowcast-data/SOURCE.zarr]",
        ),
    ] = None,
    product: Annotated[
        str | None, typer.Option(help="Keep only this product when the input holds several.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Fail on the first file that cannot be used.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Worker threads. [default: all cores]", min=1)
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Edge of the training-resolution copy; for an existing store that lacks it, "
            "made from the store's frames. [default: 120 for a new store]",
        ),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of file times (hko7; default Asia/Hong_Kong).")
    ] = None,
    mask_root: Annotated[
        Path | None, typer.Option(help="Folder of the per-frame mask files (hko7).")
    ] = None,
    var: Annotated[
        str | None,
        typer.Option(help="Variable to read (netcdf; default: the one marked as precipitation)."),
    ] = None,
    attribution: Annotated[
        str | None,
        typer.Option(
            help="Credit line to record in the store (netcdf; default: the file's attribution "
            "or institution attribute)."
        ),
    ] = None,
    units: Annotated[
        str | None,
        typer.Option(
            help="Units of that variable when the file's are missing or wrong (netcdf): mm, "
            "kg m-2 (amounts per time step), mm/h, kg m-2 s-1, m/s (rates), dBZ."
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="MINUTES",
            help="Accumulation period / product interval when the file does not state it (netcdf).",
        ),
    ] = None,
    zr: Annotated[
        str | None,
        typer.Option(
            metavar="A,B", help="Z–R coefficients of Z = a R^b (netcdf; default 200,1.6)."
        ),
    ] = None,
    crop: Annotated[
        str | None,
        typer.Option(
            metavar="X0,Y0,X1,Y1",
            help="Square region (pixels, row 0 at the top, ends exclusive) the training copy "
            "covers; by default the largest centred square.",
        ),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Ingest raw radar files into a chunked Zarr store (appends; re-running resumes)."""
    _modes(quiet, as_json)
    from nowcast_cli.ingest import ingest as run_ingest

    given: dict[str, Any] = {"timezone": timezone, "mask_root": mask_root, "var": var}
    given.update(units=units, interval=interval, zr=zr, attribution=attribution)
    options = {k: v for k, v in given.items() if v is not None}  # absent: the reader's default
    with show.Progress(enabled=not (_State.quiet or _State.as_json)) as bar:
        report = run_ingest(
            source,
            raw,
            out,
            product=product,
            strict=strict,
            workers=workers,
            sizes=(120 if size is None else size,),
            crop=crop,
            reader_options=options,
            progress=bar.update,
        )
        if size is not None and report.frames:  # asked for a copy an existing store lacks
            from nowcast_cli.store import ensure_copy

            if ensure_copy(report.store, size, progress=bar.update):
                report.copies_made.append(size)
    if _State.as_json:
        _print_json(report.as_dict())
    elif not _State.quiet:
        show.show_ingest(report)
    if strict and report.failed:
        raise _fail(f"{len(report.failed)} file(s) failed (--strict)")
    if report.failed and not report.written:
        first = report.failed[0]
        more = f" and {len(report.failed) - 1} more" if len(report.failed) > 1 else ""
        kept = (
            f"{report.store} is unchanged"
            if report.frames
            else f"no store was left at {report.store}"
        )
        raise _fail(
            f"nothing written: {first.name}: {first.reason}{more} ({kept}; is the input "
            f"{source} data? See `nowcast list sources`)"
        )


# -- train ---------------------------------------------------------------------------------------
def _opt(help: str, *decls: str) -> Any:
    return typer.Option(*decls, help=help, show_default=False)


@app.command()
@handle_errors
def train(
    model: Annotated[str | None, _opt("Model to train (see `nowcast list models`).")] = None,
    loss: Annotated[str | None, _opt("Training loss (see `nowcast list losses`).")] = None,
    store: Annotated[
        str | None,
        _opt("Observation store, folder or URL. (default: the only store in ./nowcast-data)"),
    ] = None,
    config: Annotated[
        Path | None, _opt("TOML file of options (keys as these options; the command line wins).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a run (--run, default the latest).")
    ] = False,
    run: Annotated[
        str | None, _opt("Run folder. (default: runs/MODEL-LOSS-UTCTIME, or the latest to resume)")
    ] = None,
    size: Annotated[int | None, _opt("Training-copy edge of the store. (default: 120)")] = None,
    in_frames: Annotated[int | None, _opt("Observed frames per sample. (default: 10)")] = None,
    out_frames: Annotated[int | None, _opt("Forecast frames per sample. (default: 10)")] = None,
    max_missing: Annotated[
        int | None, _opt("Missing frames a sample may have (zero-filled, masked). (default: 0)")
    ] = None,
    stride: Annotated[
        int | None, _opt("Intervals between sample starts. (default: in + out frames)")
    ] = None,
    train_range: Annotated[
        str | None,
        _opt("Training dates START:END[,START:END…]. (default: 80/10/10 by day)", "--train"),
    ] = None,
    valid_range: Annotated[str | None, _opt("Validation dates START:END[,…].", "--valid")] = None,
    test_range: Annotated[str | None, _opt("Test dates START:END[,…].", "--test")] = None,
    valid_samples: Annotated[
        int | None, _opt("Validate on at most this many samples (0 = all). (default: 0)")
    ] = None,
    layers: Annotated[
        int | None,
        _opt(
            "Depth: recurrent layers, RainNet's pooling levels, SimVP's translator blocks. "
            "(default: the model's published one; 3 recurrent layers)"
        ),
    ] = None,
    hidden: Annotated[
        int | None,
        _opt(
            "Width: hidden channels, RainNet's first-level filters, SimVP's hid_S. "
            "(default: the model's published one; 64)"
        ),
    ] = None,
    kernel: Annotated[
        int | None, _opt("Kernel size. (default: the model's published one; 3)")
    ] = None,
    conv: Annotated[
        str | None, _opt("3×3 convolutions on CPU: auto (Winograd) or direct. (default: auto)")
    ] = None,
    balanced: Annotated[
        bool | None, _opt("B-MSE/B-MAE weights by rain rate. (default: balanced)")
    ] = None,
    ff_k: Annotated[float | None, _opt("Focal frame exponent k. (default: 2)")] = None,
    ff_eps: Annotated[float | None, _opt("Focal frame bias ε. (default: 0.01)")] = None,
    loss_scale: Annotated[float | None, _opt("Factor on the loss. (default: 0.001)")] = None,
    loss_frames: Annotated[
        str | None, _opt("Loss over all outputs or the forecast frames only. (default: all)")
    ] = None,
    batch: Annotated[int | None, _opt("Global batch size. (default: 4)")] = None,
    optimizer: Annotated[str | None, _opt("adamhd or adam. (default: adamhd)")] = None,
    lr: Annotated[float | None, _opt("(Initial) learning rate. (default: 5e-4)")] = None,
    hypergrad_lr: Annotated[
        float | None, _opt("AdamHD hypergradient rate. (default: 1e-8)")
    ] = None,
    epochs: Annotated[int | None, _opt("Epochs. (default: 30)")] = None,
    max_steps: Annotated[int | None, _opt("Stop after this many steps in all.")] = None,
    seed: Annotated[int | None, _opt("Random seed. (default: 2021)")] = None,
    scheduled_sampling: Annotated[
        bool | None, _opt("Scheduled sampling, η from 1 to 0. (default: on)")
    ] = None,
    clip_value: Annotated[
        float | None, _opt("Clip gradient elements to ±VALUE (0 = off). (default: 5)")
    ] = None,
    device: Annotated[str | None, _opt("auto, cpu or cuda. (default: auto)")] = None,
    devices: Annotated[
        int | None, _opt("Processes for DistributedDataParallel. (default: 1)")
    ] = None,
    precision: Annotated[str | None, _opt("fp32, or bf16 on CUDA. (default: fp32)")] = None,
    compile: Annotated[bool | None, _opt("torch.compile the cells (CUDA). (default: off)")] = None,
    workers: Annotated[
        int | None, _opt("Data-loading processes. (default: 0 on CPU, 2 on CUDA)")
    ] = None,
    checkpoint_every: Annotated[
        int | None, _opt("Also write last.pt every N steps. (default: epoch ends)")
    ] = None,
    valid_every: Annotated[
        int | None, _opt("Validate every N steps (0 = every epoch end). (default: 0)")
    ] = None,
    select: Annotated[
        str | None,
        _opt(
            "Which weights best.pt keeps: val-bmse+bmae, val-csi (the same rule whatever the "
            "loss), val-loss (the run's own loss) or last. (default: val-bmse+bmae)"
        ),
    ] = None,
    predict: Annotated[
        bool | None,
        _opt("Forecast the test split when training ends (for `nowcast verify`). (default: on)"),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on a store (the paper's recipe by default); Ctrl-C saves and stops."""
    _modes(quiet, as_json)
    options = dict(locals())
    for key in ("config", "quiet", "as_json"):
        options.pop(key)
    for flag, key in (("train_range", "train"), ("valid_range", "valid"), ("test_range", "test")):
        options[key] = options.pop(flag)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    options["resume"] = resume or None
    from nowcast_cli.store import ensure_copy, resolve_store
    from nowcast_cli.train import configure, fit
    from nowcast_cli.training.plan import check_names

    cfg = configure(options, config)
    check_names(cfg)  # a typo is named before a missing training copy is made
    if os.environ.get("RANK", "0") == "0":
        # a missing training copy is made once from the store's full grid, with a bar
        with show.Progress(enabled=not (_State.quiet or _State.as_json)) as bar:
            ensure_copy(resolve_store(cfg.data.store), cfg.data.size, progress=bar.update)
    with show.TrainProgress(enabled=not (_State.quiet or _State.as_json)) as bar:
        result = fit(cfg, progress=bar.update)
    if result.rank != 0:
        return
    if _State.as_json:
        _print_json(result.as_dict())
    elif not _State.quiet:
        show.show_train(result)
    if result.status == "interrupted":
        typer.echo(
            f"Interrupted at step {result.steps}; last.pt saved. "
            f"Continue with: nowcast train --resume --run {result.run_dir}",
            err=True,
        )
        raise typer.Exit(130)


# -- predict -------------------------------------------------------------------------------------
@app.command()
@handle_errors
def predict(
    run: Annotated[
        str | None,
        _opt(
            "Trained run to forecast with (with --model: whose store and split to follow). "
            "(default: the latest run)"
        ),
    ] = None,
    model: Annotated[
        str | None, _opt("A baseline instead of a trained run: persistence or extrapolation.")
    ] = None,
    store: Annotated[
        str | None, _opt("Observation store, folder or URL. (default: the run's, or the only one)")
    ] = None,
    split: Annotated[
        str, typer.Option(help="The split whose windows to forecast: test, valid or train.")
    ] = "test",
    start: Annotated[
        str | None, _opt("Forecast every issue time from this UTC date/time (instead of a split).")
    ] = None,
    end: Annotated[str | None, _opt("… up to this UTC date/time (a date: the whole day).")] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="One nowcast from the newest frames of the store.")
    ] = False,
    native: Annotated[
        bool,
        typer.Option(
            "--native", help="Baselines: forecast on the full grid, not the training copy."
        ),
    ] = False,
    checkpoint: Annotated[str, typer.Option(help="best, last or a checkpoint file.")] = "best",
    in_frames: Annotated[
        int | None, _opt("Observed frames (baselines without a run). (default: 10)")
    ] = None,
    out_frames: Annotated[
        int | None, _opt("Forecast frames (baselines without a run). (default: 10)")
    ] = None,
    size: Annotated[
        int | None, _opt("Training copy (baselines without a run). (default: the store's)")
    ] = None,
    batch: Annotated[int, typer.Option(help="Samples per forward pass.", min=1)] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    motion: Annotated[
        str, typer.Option(help="Extrapolation motion field: lk (Lucas–Kanade) or vet.")
    ] = "lk",
    out: Annotated[
        str | None, _opt("Forecast store (folder or URL) to write. (default: RUN/forecasts.zarr)")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace forecasts of another configuration (and their scores)."
        ),
    ] = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Forecast from a trained run or a baseline into a forecast store (resumes if stopped)."""
    options: dict[str, Any] = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in locals().items()
        if k not in ("quiet", "as_json")
    }
    _modes(quiet, as_json)
    from nowcast_cli.predict import PredictConfig, forecast

    cfg = PredictConfig(**options)
    with show.Progress(enabled=not (_State.quiet or _State.as_json)) as bar:
        result = forecast(cfg, progress=bar.update)
    if _State.as_json:
        _print_json(result.as_dict())
    elif not _State.quiet:
        show.show_predict(result)


# -- verify --------------------------------------------------------------------------------------
@app.command()
@handle_errors
def verify(
    forecasts: Annotated[
        str | None,
        typer.Argument(
            help="Forecast store (folder or URL) or run folder. "
            "[default: the newest runs/*/forecasts.zarr]"
        ),
    ] = None,
    thresholds: Annotated[
        str, typer.Option(help="Rain-rate thresholds in mm/h; an event is rain ≥ τ.")
    ] = "0.5,2,5,10,30",
    frames: Annotated[
        str,
        typer.Option(
            help="forecast: the forecast leads; all: also the reconstructed input frames "
            "(the paper's 19 output frames)."
        ),
    ] = "forecast",
    per_lead: Annotated[bool, typer.Option("--per-lead", help="Show every lead time.")] = False,
    bootstrap: Annotated[
        int,
        typer.Option(
            help="Block-bootstrap replicates for 95% intervals (0: none; --compare: 1000).",
            min=0,
        ),
    ] = 0,
    block_hours: Annotated[
        float, typer.Option(help="Bootstrap block of issue times in hours (24: UTC days).")
    ] = 24.0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap draws.")] = 0,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            help="Two runs or forecast stores: paired difference A − B on their shared "
            "issue times. Comma-separated runs on each side (e.g. seeds) are paired by "
            "position and pooled; seeds and days are then both resampled.",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help="Observation store. [default: the one the forecasts name]"),
    ] = None,
    scores: Annotated[
        str, typer.Option(help="Score groups to compute: categorical, continuous or both.")
    ] = "categorical,continuous",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify forecasts against their observations: contingency and image scores."""
    _modes(quiet, as_json)
    from nowcast_cli import verify as v

    groups = tuple(g.strip() for g in scores.split(",") if g.strip())
    options: dict[str, Any] = dict(
        thresholds=thresholds, frames=frames, groups=groups, block_hours=block_hours, seed=seed
    )
    with show.Progress(enabled=not (_State.quiet or _State.as_json)) as bar:
        if compare is not None:
            if forecasts is not None:
                raise _fail("give either FORECASTS or --compare RUN_A RUN_B, not both")
            n = bootstrap or v.DEFAULT_COMPARE_BOOTSTRAP
            cmp = v.compare(
                *compare, bootstrap=n, observations=store, progress=bar.update, **options
            )
        else:
            result = v.evaluate(
                forecasts, bootstrap=bootstrap, observations=store, progress=bar.update, **options
            )
            written = v.write_scores(result)
    if compare is not None:
        if _State.as_json:
            _print_json(cmp.as_dict())
        elif not _State.quiet:
            show.show_comparison(cmp, per_lead)
        return
    if _State.as_json:
        _print_json({**result.as_dict(), "written": [str(p) for p in written]})
    elif not _State.quiet:
        show.show_verification(result, per_lead)
        show.console().print(f"scores → {written[0]}, {written[1].name}", markup=False)


# -- plot ---------------------------------------------------------------------------------------
@app.command()
@handle_errors
def plot(
    kind: Annotated[
        str,
        typer.Argument(
            help="sample, scores, frames, training, animate or store.", show_default=False
        ),
    ],
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs or forecast stores to draw. [default: the latest (up to 6) that have "
            "what the figure needs]",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None, _opt("Observation store (store), folder or URL. (default: the only one)")
    ] = None,
    time: Annotated[
        str | None,
        _opt(
            "Issue time (sample, animate) or frame time (store), UTC. (default: most rain / newest)"
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Scores to draw (scores), comma-separated.")
    ] = "csi,hss",
    size: Annotated[int | None, _opt("store: draw this training copy, not the full grid.")] = None,
    mean: Annotated[
        bool, typer.Option("--mean", help="store: the mean rain rate over all frames.")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="png, svg or pdf.")] = "png",
    out: Annotated[
        Path | None, _opt("File (or folder) to write. (default: RUN/figures/ or ./figures/)")
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Draw what a forecaster looks at: forecasts, scores, training curves, a store."""
    _modes(quiet, as_json)
    from nowcast_cli.figures import PlotConfig, make_figure

    cfg = PlotConfig(
        kind=kind,
        runs=tuple(str(r) for r in runs or ()),
        store=str(store) if store is not None else None,
        time=time,
        metrics=tuple(m.strip().lower() for m in metric.split(",") if m.strip()),
        size=size,
        mean=mean,
        format=fmt,
        out=str(out) if out is not None else None,
    )
    written = make_figure(cfg)
    if _State.as_json:
        _print_json([str(p) for p in written])
    elif not _State.quiet:
        for p in written:
            typer.echo(f"wrote {p}")


# -- demo ---------------------------------------------------------------------------------------
@app.command()
@handle_errors
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Fresh folder for everything the demo writes.")
    ] = Path("nowcast-demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="A few training steps only (a smoke test).")
    ] = False,
    data: Annotated[
        Path | None, _opt("The RADKLIM netCDF file. (default: the bundled one)")
    ] = None,
    steps: Annotated[
        int | None, _opt("Training steps per model. (default: 300; --quick: 3)", "--steps")
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The whole chain on 11 days of real DWD rain: ingest, train, predict, verify, plot."""
    _modes(quiet, as_json)
    from nowcast_cli.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        directory=str(directory),
        quick=quick,
        data=str(data) if data is not None else None,
        steps=steps,
    )
    with show.DemoProgress(enabled=not (_State.quiet or _State.as_json)) as bar:
        result = run_demo(cfg, progress=bar.update)
    if _State.as_json:
        _print_json(result.as_dict())
    elif not _State.quiet:
        show.show_demo(result)


# -- info ----------------------------------------------------------------------------------------
@app.command()
@handle_errors
def info(
    target: Annotated[
        str | None,
        typer.Argument(
            help="A store or forecast store (folder or URL), or a run folder. "
            "[default: the only store in ./nowcast-data]"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Describe a store (product, shape, time span, gaps, units), forecasts or a run folder."""
    _modes(False, as_json)
    from nowcast_cli.runs import is_run
    from nowcast_cli.store import Store, is_url, location, resolve_store

    if target is not None and not is_url(location(target)) and is_run(Path(target)):
        from nowcast_cli.runs import run_summary

        summary = run_summary(Path(target))
        if _State.as_json:
            _print_json(summary)
        else:
            show.show_run(summary)
        return

    loc = resolve_store(target)
    forecasts = _forecast_summary(loc) if target is not None else None
    if forecasts is not None:
        if _State.as_json:
            _print_json(forecasts)
        else:
            show.show_forecast_store(forecasts)
        return
    with Store.open(loc) as store:
        s = store.summary()
    if _State.as_json:
        _print_json(s)
        return
    from rich.table import Table

    t = Table(title=f"nowcast store {s['path']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("source / product", f"{s['source']} / {s['product']}")
    t.add_row("frames", f"{s['frames']} × {s['shape'][0]}×{s['shape'][1]} ({s['grid']})")
    t.add_row("interval", f"{s['interval_seconds'] // 60} min")
    t.add_row("time span (UTC)", f"{s['start']} → {s['end']}" if s["start"] else "empty")
    t.add_row(
        "gaps", f"{s['gaps']} ({s['missing_frames']} missing frames)" if s["gaps"] else "none"
    )
    t.add_row("units", s["units"])
    t.add_row("Z–R", f"Z = {s['zr']['a']} R^{s['zr']['b']}")
    copies = [f"{c['size']}×{c['size']} of the {c['description']}" for c in s["coarse"]]
    t.add_row("training copies", "; ".join(copies) or "none")
    if s["uncommitted"]:
        t.add_row("interrupted", f"{s['uncommitted']} uncommitted frames (re-run ingest to resume)")
    t.add_row("attribution", str(s["attribution"]))
    con = show.console()
    con.print(t)
    for g in s["gap_list"][:10]:
        con.print(f"  gap: {g['after']} → {g['before']} ({g['missing']} missing)")


def _forecast_summary(loc: Any) -> dict[str, Any] | None:
    """`ForecastStore.summary` of the store at `loc`; None if it is not a forecast store.

    It is then an observation store, or nothing: `Store.open` says which.
    """
    from nowcast_cli.errors import StoreError
    from nowcast_cli.store import ForecastStore

    try:
        with ForecastStore.open(loc) as fs:
            return fs.summary()
    except StoreError:
        return None


# -- list ----------------------------------------------------------------------------------------
@list_app.command("sources")
@handle_errors
def list_sources(as_json: JsonOpt = False) -> None:
    """Radar sources `nowcast ingest` can read."""
    _modes(False, as_json)
    from nowcast_cli.io import READERS

    rows = [
        {
            "name": name,
            "description": desc,
            "zr": list(READERS.get(name).zr),
            "attribution": READERS.get(name).attribution,
        }
        for name, desc in READERS.describe().items()
    ]
    _print_rows(rows, ["name", "description"], "sources")


@list_app.command("models")
@handle_errors
def list_models_cmd(as_json: JsonOpt = False) -> None:
    """Nowcasting models, with trainable parameters at the published configuration."""
    _modes(False, as_json)
    from nowcast_cli.models import list_models

    rows = list_models()
    if not _State.as_json:
        rows = [
            {
                **r,
                "params": f"{r['params'] / 1e6:.2f}M",
                "paper": "—" if r["paper_params"] is None else f"{r['paper_params'] / 1e6:.2f}M",
            }
            for r in rows
        ]
    _print_rows(
        rows,
        ["name", "params", "paper", "description"],
        "models at their published configuration (FFL paper: 3 layers × 64, 120×120); "
        "paper = Table II, or the authors' code's count (rainnet, simvp)",
    )


@list_app.command("losses")
@handle_errors
def list_losses_cmd(as_json: JsonOpt = False) -> None:
    """Training losses (each also in a balanced B- form, --balanced)."""
    _modes(False, as_json)
    from nowcast_cli.losses import LOSSES

    rows = [{"name": n, "description": d} for n, d in LOSSES.describe().items()]
    _print_rows(rows, ["name", "description"], "losses")


@list_app.command("metrics")
@handle_errors
def list_metrics_cmd(as_json: JsonOpt = False) -> None:
    """Verification scores (`nowcast verify`, the metric column of scores.csv)."""
    _modes(False, as_json)
    from nowcast_cli.metrics import METRICS, categorical

    rows = [
        {
            "name": n,
            "kind": "categorical" if n in categorical.NAMES else "continuous",
            "description": d,
        }
        for n, d in METRICS.describe().items()
    ]
    _print_rows(rows, ["name", "kind", "description"], "metrics")


@list_app.command("stores")
@handle_errors
def list_stores_cmd(as_json: JsonOpt = False) -> None:
    """Stores in ./nowcast-data."""
    _modes(False, as_json)
    from nowcast_cli.store import Store, list_stores

    rows = []
    cwd = Path.cwd()
    for p in list_stores():
        with Store.open(p) as s:
            info = s.summary()
        info["path"] = str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p)
        rows.append({k: info[k] for k in ("path", "product", "frames", "start", "end")})
    _print_rows(
        rows,
        ["path", "product", "frames", "start", "end"],
        "stores",
        empty="no stores in ./nowcast-data: make one with `nowcast ingest SOURCE RAW...` "
        "(`nowcast list sources` names the sources), or pass --store to a command",
    )


@list_app.command("runs")
@handle_errors
def list_runs_cmd(as_json: JsonOpt = False) -> None:
    """Training runs in ./runs: model, loss, steps, the chosen checkpoint's score."""
    _modes(False, as_json)
    from nowcast_cli.runs import list_runs, run_summary

    rows = [run_summary(p) for p in list_runs()]
    if not _State.as_json:
        rows = [
            {
                **r,
                "steps": "—" if r["baseline"] else f"{r['steps']}/{r['planned_steps'] or '?'}",
                "select": r["select"] or "—",
                "best_score": "—" if r["best_score"] is None else f"{r['best_score']:.6g}",
            }
            for r in rows
        ]
    _print_rows(
        rows,
        ["name", "model", "loss", "steps", "select", "best_score"],
        "runs",
        empty="no runs in ./runs: train one with `nowcast train --model MODEL --loss LOSS`, or "
        "forecast with a baseline: `nowcast predict --model persistence`",
    )


def _print_rows(
    rows: list[dict[str, Any]], columns: list[str], what: str, empty: str | None = None
) -> None:
    if _State.as_json:
        _print_json(rows)
        return
    if not rows and empty is not None:
        typer.echo(empty)
        return
    from rich.table import Table

    t = Table(title=what)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(r[c]) for c in columns])
    show.console().print(t)
