"""DistributedDataParallel: processes, the process group, and the sums between them.

Two ways in, one loop: ``--devices N`` spawns N processes here (`spawn`; each gets an equal
share of the CPU threads, gloo on CPU, NCCL on CUDA), and ``torchrun`` starts them itself
(`in_torchrun`). Either way every process runs `nowcast_cli.training.loop.Trainer` on its
slice of each global batch; only rank 0 writes logs and checkpoints.

What is summed between processes, and why it is exact:

- gradients: DDP averages them, so every process holds the gradient of the global batch's
  mean loss, as one process would;
- logged loss, plain loss and gradient norm: averaged over processes (each process's norm
  is already that of the averaged gradient; a sum would log it ``world`` times);
- per-frame statistics (`logs.FrameStats`) and validation sums: summed, since each process
  saw different samples; a checkpoint stores the global sums (`reduced_copy`), and on resume
  rank 0 alone starts from them.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from nowcast_cli.errors import RunError, TrainingError

if TYPE_CHECKING:
    from nowcast_cli.training.plan import Plan, RunResult

__all__ = [
    "agree",
    "in_torchrun",
    "init_group",
    "reduce",
    "reduced_copy",
    "spawn",
    "torchrun_rank",
]

Progress = Callable[[dict[str, Any]], None]
_TIMEOUT = dt.timedelta(minutes=30)


def in_torchrun() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def torchrun_rank(cuda: bool) -> tuple[int, int]:
    """Join torchrun's process group; (rank, world)."""
    dist.init_process_group("nccl" if cuda else "gloo", timeout=_TIMEOUT)
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def init_group(device: torch.device, rank: int, world: int, port: int) -> None:
    """Join the group of processes that `spawn` started, on localhost:`port`."""
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=_TIMEOUT,
    )


def reduce(t: Tensor, world: int, op: Any = None) -> Tensor:
    """Sum (or `op`) `t` over the processes, in place; a no-op in one process."""
    if world > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def reduced_copy(t: Tensor, world: int) -> Tensor:
    """The sum of `t` over the processes, `t` itself unchanged (collective: all must call)."""
    return reduce(t.detach().clone(), world)


def agree(flag: bool, world: int, device: torch.device) -> bool:
    """Whether any process raised `flag` (collective)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    return bool(reduce(t, world, dist.ReduceOp.MAX).item())


Worker = Callable[["Plan", int, int, "Progress | None", "int | None"], "RunResult"]


def spawn(plan: Plan, progress: Progress | None, worker: Worker) -> RunResult:
    """Run ``worker(plan, rank, world, progress, port)`` in ``devices`` spawned processes.

    This process relays rank 0's progress events and returns its result; an error in the
    processes is raised here (`TrainingError` for a non-finite loss, else `RunError`).
    """
    import torch.multiprocessing as mp

    world = plan.cfg.devices
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    threads = max(1, (os.cpu_count() or 1) // world)
    env = {"OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # spawned children read these when they import torch and numba
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the children handle Ctrl-C
    box: dict[str, Any] = {"result": None, "error": None}
    try:
        procs = mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
            _spawned, args=(world, port, plan, queue, worker), nprocs=world, join=False,
            start_method="spawn",
        )  # fmt: skip
        while True:
            _drain(queue, progress, box)
            if procs.join(timeout=0.2):
                break
        _drain(queue, progress, box)
    finally:
        signal.signal(signal.SIGINT, previous)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    error: str | None = box["error"]
    if error is not None:
        raise TrainingError(error) if error.startswith("loss ") else RunError(error)
    if box["result"] is None:
        raise RunError("the training processes ended without a result")
    result: RunResult = box["result"]
    return result


def _drain(queue: Any, progress: Progress | None, box: dict[str, Any]) -> None:
    while not queue.empty():
        kind, payload = queue.get()
        if kind == "progress" and progress is not None:
            progress(payload)
        elif kind in box:
            box[kind] = payload


def _spawned(rank: int, world: int, port: int, plan: Plan, queue: Any, worker: Worker) -> None:
    def relay(event: dict[str, Any]) -> None:
        queue.put(("progress", event))

    from nowcast_cli.errors import NowcastError

    try:
        result = worker(plan, rank, world, relay if rank == 0 else None, port)
        if rank == 0:
            queue.put(("result", result))
    except NowcastError as exc:
        if rank == 0:
            queue.put(("error", str(exc)))
