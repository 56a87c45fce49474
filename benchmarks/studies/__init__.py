"""Studies: one-off measurements around the comparison harness.

Each is run as ``python -m benchmarks.studies.<name>`` from the repository
root, writes its report (with the header of :func:`benchmarks._common.header`)
under ``benchmarks/results/<folder>/``, and takes size options that make it
tiny (``--smoke``) for its test.

balancing
    Load balance of tree clones under each penalty and capacity, regime
    recovery (ARI), the shared expert. ``results/balancing/``.
fused_vs_loop
    The fused all-torch mixture against a loop of skorch nets (needs torch).
    ``results/fused/``.
oof_gate
    An idea, not a feature: a gate fitted by EM over fixed out-of-fold
    expert likelihoods, against the best expert and Stacking.
    ``results/oof_gate/``.
"""
