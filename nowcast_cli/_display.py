"""What the command line shows: rich progress bars and result tables (no domain logic).

Everything here renders results the library returns; `nowcast_cli.cli` calls it. Rich is
imported inside the functions, so that ``nowcast --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class Progress:
    """A rich progress bar fed by ``update(phase, done, total)``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = (enabled and sys.stderr.isatty()) or (enabled and force_progress())
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def update(self, phase: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if phase not in self._tasks:
            label = {
                "scan": "scanning",
                "write": "writing",
                "verify": "verifying",
                "predict": "predicting",
                "copy": "training copy",
            }.get(phase, phase)
            self._tasks[phase] = self._bar.add_task(label, total=total, rate="")
        task = self._tasks[phase]
        t = self._bar.tasks[task]
        elapsed = t.elapsed or 0.0
        unit = {"scan": "files/s", "verify": "samples/s", "predict": "samples/s"}.get(
            phase, "frames/s"
        )
        rate = f"{done / elapsed:6.1f} {unit}" if elapsed > 0 else ""
        self._bar.update(task, completed=done, total=total, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def force_progress() -> bool:

    return os.environ.get("NOWCAST_PROGRESS") == "1"


def show_ingest(report: Any) -> None:
    from rich.table import Table

    from nowcast_cli.store import iso

    con = console()
    t = Table(title=f"nowcast ingest → {report.store}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("product", str(report.product or "—"))
    t.add_row("written", str(report.written))
    t.add_row("already present", str(report.present))
    t.add_row("skipped", str(len(report.skipped)))
    t.add_row("failed", str(len(report.failed)))
    t.add_row("frames in store", str(report.frames))
    t.add_row("time span (UTC)", f"{report.start} → {report.end}" if report.start else "—")
    missing = sum(g.missing for g in report.gaps)
    t.add_row("gaps", f"{len(report.gaps)} ({missing} missing frames)" if report.gaps else "none")
    for size in report.copies_made:
        t.add_row("training copy", f"{size}×{size} made from the store's frames")
    t.add_row("time", f"{report.seconds:.1f} s")
    con.print(t)
    for title, items in (
        ("failed", report.failed),
        ("skipped", report.skipped),
        ("warnings", report.warnings),
    ):
        if items:
            con.print(f"[bold]{title}:[/bold]")
            for f in items[:20]:
                con.print(f"  {f.name}: {f.reason}", markup=False)
            if len(items) > 20:
                con.print(
                    f"  … and {len(items) - 20} more (all in the store's ingest_log attribute)"
                )
    for g in report.gaps[:5]:
        con.print(f"  gap: {iso(g.after)} → {iso(g.before)} ({g.missing} missing)")


class TrainProgress:
    """A rich progress bar fed by `fit`'s events (epoch, step, loss, samples/s, ETA)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and (sys.stderr.isatty() or force_progress())
        self._bar: Any = None
        self._task: Any = None
        self._valid = ""

    def __enter__(self) -> TrainProgress:
        return self

    def update(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event["event"]
        if kind == "start":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            con = console(stderr=True)
            w = event["windows"]
            con.print(
                f"training → {event['run']}\n  {event['split_note']}; windows: "
                f"{w['train']} train, {w['valid']} validation, {w['test']} test; "
                f"{event['steps_per_epoch']} steps per epoch on {event['device']}"
                + (f" × {event['devices']}" if event["devices"] > 1 else ""),
                markup=False,
            )
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=con,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "epoch", total=event["total"], completed=event["step"], info=""
            )
        elif kind == "step" and self._bar is not None:
            info = f"loss {event['loss']:.4g} · {event['samples_per_s']:.1f} samples/s" + (
                f" · valid {self._valid}" if self._valid else ""
            )
            self._bar.update(
                self._task,
                completed=event["step"],
                description=f"epoch {event['epoch']}",
                info=info,
            )
        elif kind == "valid":
            self._valid = f"{event['loss']:.4g}"

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def show_train(r: Any) -> None:
    from rich.table import Table

    t = Table(title=f"nowcast train → {r.run_dir}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("status", r.status)
    t.add_row("steps", f"{r.steps} of {r.planned_steps} ({r.epochs_done:.2f} epochs)")
    t.add_row(
        "time",
        f"{r.seconds:.1f} s on {r.device}" + (f" × {r.world_size}" if r.world_size > 1 else ""),
    )
    t.add_row("windows", ", ".join(f"{v} {k}" for k, v in r.windows.items()))
    t.add_row("split", r.split_note)
    t.add_row("last training loss", "—" if r.train_loss is None else f"{r.train_loss:.6g}")
    best = (
        ("— (the last weights)" if r.select == "last" else "— (no validation)")
        if r.best_score is None
        else f"{r.best_score:.6g} (step {r.best_step})"
    )
    t.add_row(f"chosen checkpoint ({r.select})", best)
    t.add_row("checkpoints", ", ".join(str(p) for p in (r.last_checkpoint, r.best_checkpoint) if p))
    if r.forecasts is not None:
        t.add_row("test forecasts", f"{r.forecasts} (next: nowcast verify)")
    console().print(t)


def show_predict(r: Any) -> None:
    from rich.table import Table

    t = Table(title=f"nowcast predict → {r.forecasts}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("model", r.model)
    t.add_row("samples", f"{r.samples} ({r.written} written, {r.skipped} already present)")
    t.add_row("issue times (UTC)", f"{r.first} → {r.last}" if r.first else "—")
    t.add_row("lead times", f"{r.leads[0]} … {r.leads[-1]} min ({len(r.leads)} frames)")
    t.add_row("time", f"{r.seconds:.1f} s")
    console().print(t)
    console().print(f"next: nowcast verify {r.run}", markup=False)


class DemoProgress:
    """One line per stage (with its time) and a progress bar while a model trains."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._train: TrainProgress | None = None

    def __enter__(self) -> DemoProgress:
        return self

    def update(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event["event"]
        con = console(stderr=True)
        if kind == "stage":
            con.print(f"[bold]{event['stage']}[/bold] · {event['detail']} …", highlight=False)
            if event["stage"].startswith("train"):
                self._train = TrainProgress(enabled=True)
        elif kind == "done":
            if self._train is not None:
                self._train.__exit__(None, None, None)
                self._train = None
            con.print(f"  done in {event['seconds']:.1f} s", highlight=False)
        elif self._train is not None and kind in ("start", "step", "valid"):
            if kind != "start":
                self._train.update(event)
            else:
                self._train.update({**event, "run": event["run"]})

    def __exit__(self, *exc: object) -> None:
        if self._train is not None:
            self._train.__exit__(None, None, None)


def show_demo(r: Any) -> None:
    from rich.table import Table

    con = console()
    thresholds = [k.split("@")[1] for k in r.scores[0] if k.startswith("csi@")]
    keys = [f"{m}@{x}" for m in ("csi", "hss") for x in thresholds] + ["mse", "ssim"]
    names = [f"{k.split('@')[0].upper()} ≥ {k.split('@')[1]}" if "@" in k else k.upper()
             for k in keys]  # fmt: skip
    t = Table(
        title="nowcast demo: test days 18–20 May 2018, mean over lead times",
        title_justify="left",
    )
    t.add_column("score")
    short = {"persistence": "persist.", "extrapolation": "extrap."}
    for row in r.scores:
        name = row["run"].replace("convlstm ", "")
        t.add_column(short.get(name, name), justify="right")
    t.add_column("ff-mse − mse [95%]", justify="right", no_wrap=True)
    c = r.comparison
    for key, name in zip(keys, names, strict=True):
        value, lo, hi = c[key]
        diff = f"{value:+.3f} [{lo:+.2f}, {hi:+.2f}]" + (" *" if lo > 0 or hi < 0 else "  ")
        t.add_row(name, *[fmt(row[key][0]) for row in r.scores], diff)
    con.print(t)
    con.print(
        f"{c['shared']} shared issue times in {c['blocks']} blocks of 6 h; * : the paired "
        "interval excludes 0. Intervals of every score: scores.json of each run. A small "
        "demo model trained for minutes says nothing about the paper's claims (experiments/ffl "
        "does).",
        markup=False,
    )
    for caution in c.get("cautions", []):
        con.print(f"Note: {caution}.", markup=False)
    for note in r.skipped:
        con.print(f"skipped {note}", markup=False)
    con.print(f"files written under {r.directory} ({r.seconds:.0f} s):", markup=False)
    for p in r.files:
        con.print(f"  {p.relative_to(r.directory)}", markup=False)


def fmt(x: Any, interval: tuple[Any, Any] | None = None, signed: bool = False) -> str:
    """A score for a table: 3 significant decimals, "—" when undefined."""
    import math

    def one(v: Any) -> str:
        f = float(v)
        if not math.isfinite(f):
            return "—"
        digits = 3 if abs(f) < 100 else 1
        return f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"

    text = one(x)
    if interval is not None and text != "—":
        text += f" [{one(interval[0])}, {one(interval[1])}]"
    return text


def pick(intervals: dict[str, tuple[Any, Any]], name: str, *index: int) -> tuple[Any, Any] | None:
    if name not in intervals:
        return None
    lo, hi = intervals[name]
    return (lo[index], hi[index]) if index else (lo, hi)


def show_verification(r: Any, per_lead: bool) -> None:
    from rich.table import Table

    from nowcast_cli.metrics import categorical, continuous

    con = console()
    grid = "native grid" if r.size is None else f"{r.size}×{r.size} copy"
    what = " ".join(f"{k} {r.source[k]}" for k in ("model", "loss") if r.source.get(k))
    con.print(
        f"{r.forecasts} ({what or 'forecasts'}) against {r.observations} ({grid}): "
        f"{r.samples} samples, {r.frames_scored} frames scored"
        + f"; leads {', '.join(str(m) for m in r.lead_minutes)} min",
        markup=False,
        highlight=False,
    )
    if r.unobserved is not None and r.unobserved.missing:
        con.print(r.unobserved.describe(), markup=False, highlight=False)
    con.print(
        "scored: the model's output at 1/256 pixel (forecast_fine, within 0.0005 dBZ of it)"
        if r.fine
        else "scored: the stored whole pixels (a model's output rounded to them moves by up to "
        "half a pixel, 0.14 dBZ; forecasts of observed pixels, e.g. persistence, are exact)",
        markup=False,
        highlight=False,
    )
    cats = [m for m in categorical.NAMES if m in r.mean]
    conts = [m for m in continuous.NAMES if m in r.mean]
    boot = (
        f", 95% intervals from {r.bootstrap} bootstrap replicates of {r.blocks} blocks of "
        f"{r.block_hours:g} h"
        if r.bootstrap
        else ""
    )
    if cats:
        t = Table(title=f"categorical scores, mean over leads{boot}", title_justify="left")
        t.add_column("score")
        for th in r.thresholds:
            t.add_column(f"≥ {th:g} mm/h", justify="right")
        for m in cats:
            t.add_row(
                m.upper(),
                *[fmt(r.mean[m][k], pick(r.mean_interval, m, k)) for k in range(len(r.thresholds))],
            )
        con.print(t)
    if conts:
        t = Table(
            title=f"image scores (pixel scale [0, 1]), mean over leads{boot}", title_justify="left"
        )
        t.add_column("score")
        t.add_column("value", justify="right")
        for m in conts:
            t.add_row(m.upper().replace("_", "-"), fmt(r.mean[m], pick(r.mean_interval, m)))
        con.print(t)
    if not per_lead:
        return
    for k, th in enumerate(r.thresholds if cats else []):
        t = Table(title=f"per lead, ≥ {th:g} mm/h", title_justify="left")
        t.add_column("lead")
        for m in cats:
            t.add_column(m.upper(), justify="right")
        for i, minutes in enumerate(r.lead_minutes):
            t.add_row(
                f"{minutes} min",
                *[fmt(r.per_lead[m][i, k], pick(r.lead_interval, m, i, k)) for m in cats],
            )
        con.print(t)
    if conts:
        t = Table(title="per lead, image scores", title_justify="left")
        t.add_column("lead")
        for m in conts:
            t.add_column(m.upper().replace("_", "-"), justify="right")
        for i, minutes in enumerate(r.lead_minutes):
            t.add_row(
                f"{minutes} min",
                *[fmt(r.per_lead[m][i], pick(r.lead_interval, m, i)) for m in conts],
            )
        con.print(t)


def show_comparison(c: Any, per_lead: bool) -> None:
    from rich.table import Table

    from nowcast_cli.metrics import categorical, continuous

    con = console()
    pooled = (
        f"; {c.pairs} pairs of runs pooled, pairs and blocks both resampled" if c.pairs > 1 else ""
    )
    con.print(
        f"A = {c.a}\nB = {c.b}\n{c.shared} shared issue times in {c.blocks} blocks of "
        f"{c.block_hours:g} h{pooled}; A − B with 95% intervals from {c.bootstrap} paired "
        "block-bootstrap replicates (* : the interval excludes 0)",
        markup=False,
        highlight=False,
    )
    if c.unobserved is not None and c.unobserved.missing:
        con.print(c.unobserved.describe(), markup=False, highlight=False)
    for caution in c.cautions:
        con.print(f"Note: {caution}.", markup=False, highlight=False)

    def cell(m: str, *index: int) -> str:
        d = c.diff[m][index] if index else c.diff[m]
        lo, hi = pick(c.diff_interval, m, *index) or (float("nan"), float("nan"))
        star = " *" if (lo > 0 or hi < 0) else ""
        return fmt(d, (lo, hi), signed=True) + star

    cats = [m for m in categorical.NAMES if m in c.diff]
    conts = [m for m in continuous.NAMES if m in c.diff]
    if cats:
        t = Table(title="A − B, categorical scores (mean over leads)", title_justify="left")
        t.add_column("score")
        for th in c.thresholds:
            t.add_column(f"≥ {th:g} mm/h", justify="right")
        for m in cats:
            t.add_row(m.upper(), *[cell(m, k) for k in range(len(c.thresholds))])
        con.print(t)
    if conts:
        t = Table(title="A − B, image scores (mean over leads)", title_justify="left")
        t.add_column("score")
        t.add_column("A", justify="right")
        t.add_column("B", justify="right")
        t.add_column("A − B", justify="right")
        for m in conts:
            t.add_row(m.upper().replace("_", "-"), fmt(c.mean_a[m]), fmt(c.mean_b[m]), cell(m))
        con.print(t)
    if per_lead and cats:
        for k, th in enumerate(c.thresholds):
            t = Table(title=f"A − B per lead, ≥ {th:g} mm/h", title_justify="left")
            t.add_column("lead")
            for m in cats:
                t.add_column(m.upper(), justify="right")
            for i, minutes in enumerate(c.lead_minutes):
                row = []
                for m in cats:
                    lo, hi = c.lead_diff_interval[m]
                    row.append(fmt(c.lead_diff[m][i, k], (lo[i, k], hi[i, k]), signed=True))
                t.add_row(f"{minutes} min", *row)
            con.print(t)


def show_forecast_store(f: dict[str, Any]) -> None:
    """A forecast store's summary (`ForecastStore.summary`) as a table."""
    from rich.table import Table

    t = Table(title=f"nowcast forecasts {f['path']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    made = f["model"] + (f" / {f['loss']}" if f["loss"] else " (a baseline)")
    t.add_row("model", made)
    if f["checkpoint"]:
        t.add_row("checkpoint", str(f["checkpoint"]))
    t.add_row("observations", str(f["observations"]))
    t.add_row("grid", f"{f['shape'][0]}×{f['shape'][1]}")
    span = f"{f['start']} → {f['end']}" if f["start"] else "none yet"
    t.add_row("issue times (UTC)", f"{f['samples']}: {span}")
    if f["issue_times"]:
        t.add_row("chosen as", str(f["issue_times"]))
    lm = f["lead_minutes"]
    t.add_row("lead times", f"{lm[0]} … {lm[-1]} min ({len(lm)} frames)" if lm else "none")
    t.add_row("unrounded output", "kept (forecast_fine)" if f["fine"] else "no (uint8 pixels)")
    t.add_row("created", str(f["created"]))
    console().print(t)


def show_run(s: dict[str, Any]) -> None:
    """A run's summary (`nowcast_cli.runs.run_summary`) as a table."""
    from rich.table import Table

    t = Table(title=f"nowcast run {s['path']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    if s.get("baseline"):
        t.add_row("model", f"{s['model']} (a baseline: forecasts only, no training)")
        t.add_row("store", str(s["store"]))
        t.add_row("forecasts", str(s["split"].get("note", "")))
        console().print(t)
        return
    t.add_row("model / loss", f"{s['model']} / {s['loss']}")
    t.add_row("store", str(s["store"]))
    t.add_row("steps", f"{s['steps']} of {s['planned_steps']} ({s['epochs']} epochs planned)")
    best = s["best_score"]
    t.add_row(
        f"chosen checkpoint ({s['select']})",
        "—" if best is None else f"{best:.6g} (step {s['best_step']})",
    )
    t.add_row(
        "last training loss", "—" if s["last_train_loss"] is None else f"{s['last_train_loss']:.6g}"
    )
    t.add_row("split", str(s["split"].get("note", "")))
    t.add_row("checkpoints", ", ".join(s["checkpoints"]) or "none")
    console().print(t)
