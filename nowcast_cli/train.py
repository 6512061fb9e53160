"""The training engine (SPEC §7): ``fit(cfg) -> RunResult``, on one page.

`fit` plans the run (`training.plan`), trains it in one process, in ``--devices`` spawned
processes or under torchrun (`training.distributed`), each process running the step loop
(`training.loop`) with validation and checkpoint selection (`training.validation`) and
checkpoints (`training.checkpoints`), then forecasts the test split with the chosen weights.

Decisions, where the paper and the authors' code leave room:

- Scheduled sampling: η = 1 − s/S at step s of S = epochs × steps per epoch (the authors'
  linear decay over the whole run); ``max_steps`` stops early without changing the schedule,
  so a capped run is the start of the full one. Each sample and future step draws one
  Bernoulli(η) (the rollout's contract), from a generator seeded by (seed, step) over the
  whole global batch, so the draws do not depend on how many processes share the batch.
- Data order: per epoch a permutation of the training windows from (seed, epoch), cut into
  full global batches before they are shared among processes; the n mod batch windows left
  over are not trained on in that epoch (other ones in each epoch). Every step has the same
  batch, so DDP shares are equal and the loss scale never changes.
- Gradient clipping: the authors call ``clip_grad_value_(5)`` after ``optimizer.step()``,
  which clips gradients that are never used again (a no-op). We clip each gradient element
  to ±``clip_value`` (default 5) *before* the step, which is what the call evidently meant,
  after checking that the loss and the gradient are finite (an infinite gradient stops the
  run; it is never clipped into a finite step); ``clip_value = 0`` is the authors' effective
  behaviour (no clipping). ``grad_norm`` in metrics.csv is the norm before clipping.
- Validation every epoch (the authors: every third; ``--valid-every N`` steps), under
  ``torch.inference_mode`` with η = 0, on a schedule of the step alone: a run stopped by
  ``--max-steps`` or Ctrl-C between two validations does not validate there, so it resumes
  into exactly the run it would have been.
- Which weights are tested (``--select``): the authors test the final weights; a run keeps
  those (``last.pt``) and, in ``best.pt``, the weights that a rule independent of the
  training loss prefers (default: the lowest validation B-MSE + B-MAE), so that runs trained
  with different losses are chosen alike. ``--select last`` tests the final weights.
- Exact resume and determinism: same seed, same ``--conv``, same thread count → bitwise the
  same weights on a CPU, in every process, after any ``--resume`` (README, "Determinism").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nowcast_cli import runs
from nowcast_cli.config import TrainConfig, diff_configs, from_dict, read_toml
from nowcast_cli.errors import ConfigError
from nowcast_cli.training import distributed
from nowcast_cli.training.distributed import Progress
from nowcast_cli.training.plan import RunResult, make_plan, write_config

__all__ = ["RunResult", "configure", "fit"]


def configure(options: dict[str, Any], config_file: str | Path | None = None) -> TrainConfig:
    """The TrainConfig of a new run, or of a resumed one checked against its run.

    Parameters
    ----------
    options : dict
        Options given on the command line (None = not given).
    config_file : path, optional
        TOML with more options (the command line wins).

    Raises
    ------
    ConfigError
        For invalid options, or (``resume``) options that differ from the run's; the
        message lists each difference.
    """
    given = read_toml(config_file) if config_file is not None else {}
    given.update({k.replace("-", "_"): v for k, v in options.items() if v is not None})
    if given.get("run") is not None:
        runs.check_local(given["run"])  # before anything reads a store
    if not given.get("resume"):
        return from_dict(given)
    run = runs.resolve_run(given.get("run"), what="run to resume")
    base = read_toml(run / "config.toml")
    base.setdefault("select", "val-loss")  # a run from before --select: how it chose best.pt
    diffs = diff_configs(base, {**base, **given})
    if diffs:
        raise ConfigError(
            f"--resume {run}: options differ from the run's: {'; '.join(diffs)} "
            "(resume with the run's options, or start a new run)"
        )
    return from_dict({**base, **given, "run": str(run), "resume": True})


def fit(cfg: TrainConfig, progress: Progress | None = None) -> RunResult:
    """Train a model as `cfg` says; see the module docstring.

    Parameters
    ----------
    cfg : TrainConfig
        From `configure` (or `nowcast_cli.config.load_config`).
    progress : callable, optional
        Called with event dicts: ``{"event": "start", …}``, ``"step"``, ``"valid"``,
        ``"predict"``, ``"end"`` (rank 0 only).

    Returns
    -------
    RunResult

    Raises
    ------
    NowcastError
        Bad options or data (`ConfigError`, `DataError`, `StoreError`, `RunError`), or a
        non-finite loss (`TrainingError`).
    """
    from nowcast_cli.training.loop import run_process

    if distributed.in_torchrun():
        return _fit_torchrun(cfg, progress)
    plan = make_plan(cfg)
    if not plan.resume:
        write_config(plan)
    if cfg.devices > 1:
        result = distributed.spawn(plan, progress, run_process)
    else:
        result = run_process(plan, 0, 1, progress)
    return _forecast_test(cfg, result, progress)


def _fit_torchrun(cfg: TrainConfig, progress: Progress | None) -> RunResult:
    """Under torchrun: rank 0 plans and tells the others; each trains its share."""
    import torch
    import torch.distributed as dist

    from nowcast_cli.training.loop import run_process

    rank, world = distributed.torchrun_rank(cfg.device != "cpu" and torch.cuda.is_available())
    cfg = dataclasses.replace(cfg, devices=world)
    box: list[Any] = [None]
    if rank == 0:
        try:
            box[0] = make_plan(cfg)
            if not box[0].resume:
                write_config(box[0])
        except Exception as exc:
            box[0] = exc
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], Exception):
        dist.destroy_process_group()
        raise box[0]
    mine = progress if rank == 0 else None
    result = run_process(box[0], rank, world, mine)  # the group is already joined
    return _forecast_test(cfg, result, mine)


def _forecast_test(cfg: TrainConfig, result: RunResult, progress: Progress | None) -> RunResult:
    """Forecasts of the test split with the chosen weights, into the run folder."""
    if not cfg.predict or result.rank != 0 or result.status == "interrupted":
        return result
    if result.windows.get("test", 0) == 0:
        return result
    from nowcast_cli.predict import PredictConfig, forecast

    if progress is not None:
        progress({"event": "predict", "run": str(result.run_dir)})
    # a resumed run replaces the forecasts of its earlier checkpoint
    out = forecast(PredictConfig(run=str(result.run_dir), device=cfg.device, overwrite=True))
    result.forecasts = Path(out.forecasts)  # the run folder's own, always local
    return result
