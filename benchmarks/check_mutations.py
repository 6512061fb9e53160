"""Tests that can fail: break the code each guarding test protects, on purpose, and check that
the test fails (issue 25, item 4; and guards of issues 19 and 25).

    python benchmarks/check_mutations.py                       # every mutation
    python benchmarks/check_mutations.py --only stars,ssim     # some of them
    python benchmarks/check_mutations.py --out benchmarks/results

Each mutation is a one-line change of the committed code (`git archive HEAD`, copied to a
temporary folder, so the working tree is never touched), undone after its test: the test that
guards it must pass on the unmutated copy and fail on the mutated one. The tests run from the
copy's root with ``python -m pytest``, so ``nowcast_cli`` is imported from the copy (checked
before every run). Writes ``mutations.md`` and
``mutations.json``; exits 1 when a guard passes on its mutant.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str  # the bug the mutation plants
    file: str
    old: str
    new: str
    test: str  # the guarding test's pytest id


MUTATIONS = [
    Mutation(
        "stars",
        "the significance star of `verify --compare` also marks intervals that contain 0",
        "nowcast_cli/_display.py",
        'star = " *" if (lo > 0 or hi < 0) else ""',
        'star = " *" if (lo > 0 or hi > 0) else ""',
        "tests/test_verify.py::test_compare_paired_differences",
    ),
    Mutation(
        "continuous-bootstrap",
        "MSE/MAE/SSIM intervals resample the sums but not the frame counts",
        "nowcast_cli/verify.py",
        "continuous.means(boot.resample(s, weights), boot.resample(f, weights))",
        "continuous.means(boot.resample(s, weights), f.sum(axis=0))",
        "tests/metrics/test_bootstrap.py::test_continuous_intervals_equal_a_direct_resampling_loop",
    ),
    Mutation(
        "threshold",
        '"rain ≥ τ" becomes "> τ" at a threshold equal to a code\'s own rate',
        "nowcast_cli/encoding.py",
        'return np.searchsorted(rates, t, side="left").astype(np.int64) + 1',
        'return np.searchsorted(rates, t, side="right").astype(np.int64) + 1',
        "tests/test_encoding.py::test_threshold_at_a_codes_own_rate_counts_that_code",
    ),
    Mutation(
        "ssim",
        "SSIM's K1 off by 1%",
        "nowcast_cli/metrics/continuous.py",
        "SSIM_K1, SSIM_K2 = 0.01, 0.03",
        "SSIM_K1, SSIM_K2 = 0.0101, 0.03",
        "tests/metrics/test_continuous.py::test_ssim_of_fine_forecasts_equals_scikit_image_on_the_float_output",
    ),
    Mutation(
        "unobserved",
        "a batch whose issue times have no observed frame is scored anyway (the issue's crash)",
        "nowcast_cli/verify.py",
        "if accs[0].contingency is not None and len(batch.obs_ids):",
        "if accs[0].contingency is not None:",
        "tests/test_verify.py::test_unobserved_leads_are_skipped_counted_and_reported",
    ),
    Mutation(
        "dwd-rejects-all",
        "the RADOLAN reader rejects every file (the fuzz test alone would still pass)",
        "nowcast_cli/io/dwd.py",
        "return decode(self._bytes(item), item.name)",
        'raise _bad(item.name, "mutant")',
        "tests/io/test_dwd_fuzz.py::test_seeds_decode",
    ),
    Mutation(
        "fmi-rejects-all",
        "the FMI reader rejects every file",
        "nowcast_cli/io/fmi.py",
        "            raw = item.path.read_bytes()",
        "            raw = item.path.read_bytes()[:10]",
        "tests/io/test_fuzz_sources.py::test_fmi_seeds_decode",
    ),
    Mutation(
        "knmi-rejects-all",
        "the KNMI reader rejects every file",
        "nowcast_cli/io/knmi.py",
        "if raw is None or raw.shape != h.info.grid.shape:",
        "if True:",
        "tests/io/test_fuzz_sources.py::test_knmi_seeds_decode",
    ),
    Mutation(
        "grad-norm-summed",
        "under DDP the logged gradient norm is summed over processes, not averaged (issue 19)",
        "nowcast_cli/training/loop.py",
        "flags = torch.stack([loss.detach(), plain, grad_norm]).double() / self.world",
        "flags = torch.stack([loss.detach(), plain, grad_norm * self.world]).double() / self.world",
        "tests/test_train.py::test_two_processes_equal_one",
    ),
    Mutation(
        "inf-gradient-clipped",
        "an infinite gradient is clipped and applied instead of stopping the run (issue 19)",
        "nowcast_cli/training/loop.py",
        "if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):",
        "if not math.isfinite(loss_v):",
        "tests/test_train.py::test_an_infinite_gradient_stops_the_run_instead_of_being_clipped",
    ),
    Mutation(
        "loader-global-rng",
        "the data loader draws its seed from torch's global generator (issue 19: resume differs)",
        "nowcast_cli/training/loop.py",
        "generator=torch.Generator().manual_seed(cfg.seed),",
        "generator=None,",
        "tests/test_train.py::test_exact_resume_after_a_cap_and_after_ctrl_c",
    ),
    Mutation(
        "exit-handlers",
        "the quick exit skips the exit handlers (logging, multiprocessing, zarr clean-up)",
        "nowcast_cli/cli.py",
        "    atexit._run_exitfuncs()",
        "    pass",
        "tests/test_cli.py::test_the_executable_exits_with_the_commands_code_after_its_exit_handlers",
    ),
    Mutation(
        "exit-status",
        "the quick exit reports success whatever the command's status",
        "nowcast_cli/cli.py",
        "    os._exit(code)",
        "    os._exit(0)",
        "tests/test_cli.py::test_the_executable_exits_with_the_commands_code_after_its_exit_handlers",
    ),
    Mutation(
        "blas-probe",
        "numba's BLAS probe loads scipy.linalg on the first kernel call of every command",
        "nowcast_cli/_numba.py",
        "\n_array_functions_without_blas_probe()\n",
        "\n",
        "tests/test_numba_startup.py::test_kernels_load_without_scipy_linalg_and_blas_still_works",
    ),
    Mutation(
        "lookahead",
        "the look-ahead of a store at a URL fetches nothing ahead (each batch waits for its fetch)",
        "nowcast_cli/training/loop.py",
        "        items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=self.depth)\n",
        "        yield from self.source\n        return\n",
        "tests/test_train.py::test_look_ahead_yields_the_source_in_order_while_fetching_the_next_items",
    ),
    # the science itself: plausible deviations a review re-implementing it would find
    Mutation(
        "ffl-eps",
        "the focal weight adds ε after the power, (norm)^k + ε, not (norm + ε)^k",
        "nowcast_cli/losses.py",
        "w = (norm.clamp(min=0.0) + self.eps) ** self.k",
        "w = norm.clamp(min=0.0) ** self.k + self.eps",
        "tests/test_losses.py::test_hand_computed_two_frames",
    ),
    Mutation(
        "ffl-batch-minmax",
        "min and max of ΔX over the whole batch instead of each sample's frames",
        "nowcast_cli/losses.py",
        "lo, hi = dx.amin(1, keepdim=True), dx.amax(1, keepdim=True)",
        "lo, hi = dx.amin(), dx.amax()",
        "tests/test_losses.py::test_weights_are_per_sample_over_frames",
    ),
    Mutation(
        "balance-boundary",
        "a pixel exactly at a B-MSE boundary keeps the lower weight (> instead of ≥)",
        "nowcast_cli/losses.py",
        "w = w + (g >= bound.to(g.device)) * (upper - lower)",
        "w = w + (g > bound.to(g.device)) * (upper - lower)",
        "tests/test_losses.py::test_balance_weight_at_each_rain_rate_boundary",
    ),
    Mutation(
        "hss-factor",
        "HSS without the factor 2 of its standard form (the paper's eq. 11 as printed)",
        "nowcast_cli/metrics/categorical.py",
        "return _ratio(2.0 * (a * d - c * b), (a + c) * (c + d) + (a + b) * (b + d))",
        "return _ratio(1.0 * (a * d - c * b), (a + c) * (c + d) + (a + b) * (b + d))",
        "tests/metrics/test_categorical.py::test_scores_equal_pysteps_on_the_same_counts",
    ),
    Mutation(
        "coarse-half-valid",
        "a training-copy cell exactly half valid is invalid (> half instead of ≥ half, SPEC §2)",
        "nowcast_cli/resample.py",
        "ok = den >= 0.5 - 1e-9",
        "ok = den > 0.5 + 1e-9",
        "tests/test_resample.py::test_a_cell_exactly_half_valid_is_valid_and_one_just_under_half_is_not",
    ),
    Mutation(
        "ss-schedule",
        "scheduled sampling's η lags a step (1 − (s + 1)/T: the first step is not teacher-forced)",
        "nowcast_cli/training/loop.py",
        "eta = max(0.0, 1.0 - self.step / plan.total_steps) if cfg.scheduled_sampling else 0.0",
        "eta = max(0.0, 1.0 - (self.step + 1) / plan.total_steps) if cfg.scheduled_sampling "
        "else 0.0",
        "tests/test_train.py::test_scheduled_sampling_decays_linearly_from_one_to_zero_as_the_authors_code",
    ),
    Mutation(
        "ss-draws",
        "the teacher draws feed the true frame with probability 1 − η",
        "nowcast_cli/training/loop.py",
        "return (u < eta).to(torch.float32)",
        "return (u > eta).to(torch.float32)",
        "tests/test_train.py::test_teacher_draws_feed_the_true_frame_with_probability_eta",
    ),
    Mutation(
        "ss-unused",
        "training never feeds true frames: the step's teacher draws are not passed to the rollout",
        "nowcast_cli/training/loop.py",
        "pred = self.net(x[:, :m], n, teacher=x[:, m:], teacher_prob=tp)",
        "pred = self.net(x[:, :m], n, teacher=x[:, m:], teacher_prob=0.0)",
        "tests/test_train.py::test_each_training_step_rolls_out_with_that_steps_teacher_draws",
    ),
]


def export(dest: Path) -> None:
    """The committed tree (HEAD) into `dest`."""
    tar = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        t.extractall(dest, filter="data")


def pytest(root: Path, test: str) -> tuple[int, float, str]:
    t = time.perf_counter()
    probe = (
        "import nowcast_cli, pathlib; "
        f"assert pathlib.Path(nowcast_cli.__file__).is_relative_to({str(root)!r})"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=root, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
        cwd=root,
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    return out.returncode, time.perf_counter() - t, lines[-1] if lines else out.stderr[-200:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated mutation names")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nowcast"  # one copy (numba compiles its kernels there once)
        export(root)
        for m in chosen:
            target = root / m.file
            text = target.read_text()
            if text.count(m.old) != 1:
                raise SystemExit(
                    f"Error: {m.file}: the line of mutation {m.name!r} is not there once"
                )
            clean_rc, _, _ = pytest(root, m.test)
            target.write_text(text.replace(m.old, m.new))
            try:
                rc, seconds, tail = pytest(root, m.test)
            finally:
                target.write_text(text)
            caught = clean_rc == 0 and rc == 1
            verdict = "caught" if caught else "MISSED"
            rows.append({**asdict(m), "clean_rc": clean_rc, "mutant_rc": rc,
                         "mutant_summary": tail, "seconds": round(seconds, 1),
                         "caught": caught})  # fmt: skip
            print(f"{m.name:22s} clean {clean_rc}  mutant {rc}  {verdict}  {tail}")
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    (args.out / "mutations.json").write_text(json.dumps({"commit": commit, "rows": rows}, indent=1))
    md = [
        "# Tests that can fail: deliberate mutations",
        "",
        f"`python benchmarks/check_mutations.py` at commit {commit} ({platform.machine()}, "
        f"Python {platform.python_version()}): each row plants one bug in a copy of the "
        "committed code and runs the test that guards it; the test must pass on the unmutated "
        "copy (exit 0) and fail on the mutant (exit 1).",
        "",
        "| mutation | the bug planted | file | guarding test | unmutated | mutant | |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        verdict = "caught" if r["caught"] else "**missed**"
        md.append(f"| `{r['name']}` | {r['what']} | `{r['file']}` | `{r['test'].split('::')[1]}` "
                  f"| {r['clean_rc']} | {r['mutant_rc']} | {verdict} |")  # fmt: skip
    (args.out / "mutations.md").write_text("\n".join(md) + "\n")
    return 0 if all(r["caught"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
