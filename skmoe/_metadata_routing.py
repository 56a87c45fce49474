"""Metadata routing: which fit metadata reaches which expert, on which rows.

With ``sklearn.set_config(enable_metadata_routing=True)``, the mixture's
``fit(X, y, sample_weight=None, **fit_params)`` routes each metadata in
``fit_params`` to the experts (and the shared expert) whose ``fit``
requests it, and to a ``cv`` splitter whose ``split`` requests it
(``groups`` for ``GroupKFold``), as ``StackingClassifier`` routes them
(:func:`mixture_router`, :func:`route_fit_params`).

``sample_weight`` is not routed: it is the mixture's own. It multiplies the
responsibilities, and each expert is fitted with its own product of the
two (or on a weighted resample when it takes no weights), whatever its
request says; an expert cannot be handed the user's weights as they are.

The experts are fitted on subsets of the rows (the training folds, the rows
whose responsibility is not negligible, a weighted resample), so a routed
metadata that is row-aligned, an array-like with one entry per row
(``groups``), is subset with the same index as ``X`` (:func:`metadata_rows`);
anything else (an ``eval_set`` tuple, a list of callbacks) is passed as it
is. That is scikit-learn's own rule for ``fit`` parameters in
cross-validation (``sklearn.utils.validation._check_method_params``): an
array-like whose length is the number of rows is row-aligned.
"""

from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _raise_for_params,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.validation import _check_method_params

#: The cv splitter's name among the router's children: the name of the
#: mixture's parameter, which no expert may take (``_validate_names``).
SPLITTER = "cv"


def mixture_router(owner, names, estimators, cv):
    """The :class:`~sklearn.utils.metadata_routing.MetadataRouter` of a mixture.

    Parameters
    ----------
    owner : estimator
        The mixture: a consumer of ``sample_weight`` itself.
    names, estimators : list
        The experts (with the shared expert), each routed ``fit`` to ``fit``.
    cv : object
        The ``cv`` parameter. A splitter (anything with ``split``) is routed
        ``fit`` to ``split``; ``None``, an int or an iterable of folds gives
        folds that consume nothing, and is not inspected (an iterable may be
        a generator, which inspecting it would consume).

    Returns
    -------
    MetadataRouter
    """
    router = MetadataRouter(owner=owner).add_self_request(owner)
    for name, estimator in zip(names, estimators):
        router.add(
            **{name: estimator},
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        )
    if hasattr(cv, "split"):
        router.add(
            **{SPLITTER: cv},
            method_mapping=MethodMapping().add(caller="fit", callee="split"),
        )
    return router


def route_fit_params(owner, names, fit_params):
    """Route ``fit_params`` to the experts and the splitter.

    Without metadata routing enabled, ``fit_params`` must be empty (a clear
    error says how to enable it, as scikit-learn's own meta-estimators do).

    Parameters
    ----------
    owner : estimator
        The mixture; its ``get_metadata_routing()`` names the experts
        ``names``.
    names : list of str
    fit_params : dict
        The metadata given to ``fit``, on every row.

    Returns
    -------
    experts : list of dict
        The metadata of each expert's ``fit``, in the order of ``names``.
    split : dict
        The metadata of the ``cv`` splitter's ``split``.
    """
    if not _routing_enabled():
        _raise_for_params(fit_params, owner, "fit")
        return [{} for _ in names], {}
    routed = process_routing(owner, "fit", **fit_params)
    # item access: the routed Bunch may come back a dict from a worker
    experts = [dict(routed[name]["fit"]) for name in names]
    for name, metadata in zip(names, experts):
        if "sample_weight" in metadata:
            raise ValueError(
                f"Expert {name!r} requests sample_weight through metadata "
                "routing under another name (an alias in set_fit_request), but "
                "the mixture sets every expert's sample_weight itself: the "
                "responsibilities times fit's sample_weight. Pass the weights "
                f"as {type(owner).__name__}.fit(X, y, sample_weight=...) and "
                "drop the alias."
            )
    split = dict(routed.get(SPLITTER, {}).get("split", {}))
    return experts, split


def metadata_rows(metadata, X, rows):
    """The metadata of the rows ``rows`` of ``X``.

    A row-aligned value (an array-like with ``len(X)`` entries: ``groups``)
    is indexed by ``rows`` as ``X`` is; any other value is passed as it is.

    Parameters
    ----------
    metadata : dict
    X : array-like of shape (n_samples, n_features)
        The rows the metadata is aligned to.
    rows : ndarray of int

    Returns
    -------
    dict
    """
    if not metadata:
        return {}
    return _check_method_params(X, metadata, indices=rows)
