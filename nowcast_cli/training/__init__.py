"""The rooms of the training engine; `nowcast_cli.train.fit` is the door.

``train.fit(cfg)`` reads as one page: plan the run, train it (in one process, spawned
processes or under torchrun), forecast the test split. What it calls lives here, a room per
concern, each small enough to read in one sitting:

- `plan`: options checked against the store, the split, the run folder and its
  ``config.toml`` (`make_plan`, `write_config`), and what a run did (`RunResult`);
- `loop`: one process's share of a run, the step loop (`Trainer`): scheduled sampling, the
  loss, the finiteness check, clipping, the optimizer step, epoch ends, Ctrl-C;
- `validation`: the validation pass and the checkpoint-selection rules (``--select``);
- `checkpoints`: what a checkpoint holds, writing it, and restoring a run from one;
- `logs`: ``metrics.csv`` and ``frames.csv`` (the per-frame ΔX_t and W_t);
- `distributed`: DistributedDataParallel set-up (spawned or torchrun) and the reductions.
"""
