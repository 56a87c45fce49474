"""Pinned predictions of the existing training algorithms.

Every configuration below is fitted with a fixed ``random_state`` on small data
and its ``loss_``, ``n_iter_``, ``converged_``, a few rows of its predictions and
of its gate are compared with values recorded at commit 8d89ca3, before the
estimators were restructured. A refactor that is meant to leave these algorithms
alone must leave these numbers alone.

``training=`` is always passed explicitly: the pins are for ``"em"`` and
``"hard_em"`` as they were, whatever the default becomes. Torch configurations
(``"backprop"``) are not pinned here.

The values were recorded by running this file as a script
(``python tests/test_pinned.py``), which prints them. Do not re-record them to
make a failing test pass: a change in these numbers is a change in behaviour,
and must be explained (and the pins updated in the same commit that explains
it).

The fits run in a subprocess with OpenBLAS's AVX2 ("Haswell") kernels where
the CPU has AVX2. The out-of-fold loss of ``clf_em_cv3`` depends on the BLAS
kernels: with AVX-512 ("SkylakeX") kernels, a tie between two split
thresholds of a tree fitted on one fold falls the other way, its out-of-fold
loss is 0.15962 rather than 0.15629, and the kept model (its gate and
predictions, identical under both to 1e-15) is the same. The pins were
recorded at 8d89ca3 under SkylakeX kernels; that one value was recorded again
under Haswell kernels, at the commit that says so, with no change to skmoe.
Forcing Haswell kernels does not settle it everywhere: on an AMD EPYC
machine (2026-12-02, OpenBLAS Haswell kernels in numpy and scipy) the tie
falls the SkylakeX way again. That one value is therefore pinned to either
of its two recorded values (:data:`MACHINE_DEPENDENT`); every other number,
the same configuration's gate and predictions included, is pinned to one.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MoEClassifier, MoERegressor

RTOL = 1e-7

#: (configuration, key) -> the other value it takes on some machines (the
#: module docstring): the out-of-fold loss with the tree tie broken the
#: other way.
MACHINE_DEPENDENT = {("clf_em_cv3", "loss_"): 0.15961969349402405}
#: The rows whose predictions are pinned (15 is routed to the second clone in
#: ``clf_em_top1_clones``, 4 and 15 lie in the ``x < 0`` regime of ``piecewise``).
ROWS = [0, 4, 7, 15, 42, 99, 149]


# -- data --------------------------------------------------------------------


def cancer():
    """200 rows and the first 6 features of breast_cancer."""
    X, y = load_breast_cancer(return_X_y=True)
    idx = np.random.RandomState(0).choice(len(y), 200, replace=False)
    return X[idx, :6], y[idx]


def piecewise():
    """Two linear regimes in one feature, 200 rows."""
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=200)
    y = np.where(x < 0, -3 * x, 2 * x + 1) + 0.1 * rng.randn(200)
    return x[:, None], y


def linear():
    return make_regression(n_samples=150, n_features=4, noise=5.0, random_state=0)


DATA = {"cancer": cancer, "piecewise": piecewise, "linear": linear}


# -- configurations ------------------------------------------------------------


def _lr():
    return make_pipeline(StandardScaler(), LogisticRegression())


def _lr_tree(max_depth=3):
    return [("lr", _lr()), ("tree", DecisionTreeClassifier(max_depth=max_depth))]


CONFIGS = {
    "clf_em": (
        "cancer",
        lambda: MoEClassifier(_lr_tree(), training="em", random_state=0),
    ),
    "clf_hard_em": (
        "cancer",
        lambda: MoEClassifier(_lr_tree(), training="hard_em", random_state=0),
    ),
    "clf_em_top1_clones": (
        "cancer",
        lambda: MoEClassifier(
            _lr(), n_experts=2, top_k=1, training="em", random_state=0
        ),
    ),
    "clf_em_cv3": (
        "cancer",
        lambda: MoEClassifier(
            _lr_tree(max_depth=4), training="em", cv=3, max_iter=5, random_state=0
        ),
    ),
    "clf_em_shared": (
        "cancer",
        lambda: MoEClassifier(
            DecisionTreeClassifier(max_depth=2),
            n_experts=2,
            top_k=1,
            shared_expert=_lr(),
            training="em",
            random_state=0,
        ),
    ),
    "reg_em_clones": (
        "piecewise",
        lambda: MoERegressor(
            LinearRegression(), n_experts=2, training="em", random_state=0
        ),
    ),
    "reg_hard_em_list": (
        "piecewise",
        lambda: MoERegressor(
            [("lin", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3))],
            training="hard_em",
            random_state=0,
        ),
    ),
    "reg_em_top1_list": (
        "linear",
        lambda: MoERegressor(
            [("lin", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=3))],
            training="em",
            top_k=1,
            random_state=0,
        ),
    ),
}


def _fit(name):
    data, make = CONFIGS[name]
    X, y = DATA[data]()
    with warnings.catch_warnings():
        # LogisticRegression's lbfgs may stop at max_iter on unscaled folds;
        # every other warning is an error, so a pin never hides a fallback.
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make().fit(X, y), X[ROWS]


def _observe(model, X):
    out = {
        "loss_": float(model.loss_),
        "n_iter_": int(model.n_iter_),
        "converged_": bool(model.converged_),
        "gate": model.gate_proba(X).tolist(),
    }
    if isinstance(model, MoEClassifier):
        out["proba"] = model.predict_proba(X)[:, 1].tolist()
        out["predict"] = model.predict(X).tolist()
    else:
        mean, std = model.predict(X, return_std=True)
        out["predict"] = mean.tolist()
        out["std"] = std.tolist()
    return out


# -- the pins (recorded at 8d89ca3) --------------------------------------------

# fmt: off
PINNED = {'clf_em': {'converged_': True,
            'gate': [[0.4925878855108892, 0.5074121144891108],
                     [0.40610516382311246, 0.5938948361768875],
                     [0.43756115625322933, 0.5624388437467707],
                     [0.40107093565611657, 0.5989290643438834],
                     [0.3750080350412325, 0.6249919649587676],
                     [0.49775255939625423, 0.5022474406037457],
                     [0.35461399019306344, 0.6453860098069365]],
            'loss_': 0.09573983336056881,
            'n_iter_': 7,
            'predict': [0, 1, 1, 0, 0, 1, 1],
            'proba': [0.2284823424935731,
                      0.9848903559110449,
                      0.9936742062789429,
                      0.4704336470641678,
                      0.11813562606150449,
                      0.9808348369401316,
                      0.9855564996157529]},
 'clf_em_cv3': {'converged_': False,
                'gate': [[0.669353777467492, 0.3306462225325079],
                         [0.4877736856833065, 0.5122263143166934],
                         [0.522582007604407, 0.4774179923955929],
                         [0.6468374958042041, 0.3531625041957958],
                         [0.503020116685664, 0.496979883314336],
                         [0.601723176408959, 0.3982768235910409],
                         [0.4953626291862874, 0.5046373708137126]],
                'loss_': 0.15629019167947716,
                'n_iter_': 5,
                'predict': [1, 1, 1, 0, 0, 1, 1],
                'proba': [0.5912874397911577,
                          0.9863093731991023,
                          0.9943584910585158,
                          0.24203446547099325,
                          0.16323891225414525,
                          0.9767073134807814,
                          0.9877448630158403]},
 'clf_em_shared': {'converged_': True,
                   'gate': [[0.0, 0.1962764162084851, 0.803723583791515],
                            [0.0, 0.5344750901890624, 0.4655249098109376],
                            [0.0, 0.5815693387237478, 0.41843066127625217],
                            [0.0, 0.13444216807281384, 0.8655578319271862],
                            [0.0, 0.26128839524256625, 0.7387116047574338],
                            [0.0, 0.4285937536269863, 0.5714062463730136],
                            [0.0, 0.4876411909348972, 0.5123588090651029]],
                   'loss_': 0.11282290428552905,
                   'n_iter_': 3,
                   'predict': [1, 1, 1, 0, 0, 1, 1],
                   'proba': [0.6010621226146801,
                             0.9883705581331583,
                             0.9971544557333972,
                             0.230954885773076,
                             0.1911323298907286,
                             0.9881667352549451,
                             0.9838058166441703]},
 'clf_em_top1_clones': {'converged_': True,
                        'gate': [[1.0, 0.0],
                                 [1.0, 0.0],
                                 [1.0, 0.0],
                                 [0.0, 1.0],
                                 [1.0, 0.0],
                                 [1.0, 0.0],
                                 [1.0, 0.0]],
                        'loss_': 0.13265573924145216,
                        'n_iter_': 3,
                        'predict': [1, 1, 1, 0, 0, 1, 1],
                        'proba': [0.6072837789186747,
                                  0.9746020416293939,
                                  0.9931820262035078,
                                  0.006620331453060139,
                                  0.24681517981209208,
                                  0.9838382571587027,
                                  0.9694329016666193]},
 'clf_hard_em': {'converged_': True,
                 'gate': [[0.5, 0.5],
                          [0.5, 0.5],
                          [0.5, 0.5],
                          [0.5, 0.5],
                          [0.5, 0.5],
                          [0.5, 0.5],
                          [0.5, 0.5]],
                 'loss_': 0.10829386853735795,
                 'n_iter_': 4,
                 'predict': [0, 1, 1, 0, 0, 1, 1],
                 'proba': [0.3136876989747024,
                           0.9816377066545332,
                           0.9936195383621813,
                           0.4116663995177523,
                           0.1535531960935543,
                           0.9840291991488284,
                           0.9767950758107262]},
 'reg_em_clones': {'converged_': True,
                   'gate': [[0.7833294317362854, 0.21667056826371459],
                            [0.2236721589010863, 0.7763278410989136],
                            [0.9997299657759016, 0.00027003422409839376],
                            [0.0003203188698296736, 0.9996796811301704],
                            [0.9865191582530505, 0.01348084174694952],
                            [6.0552810078156734e-05, 0.9999394471899219],
                            [0.999968977062648, 3.102293735200404e-05]],
                   'loss_': -0.8656728299459627,
                   'n_iter_': 4,
                   'predict': [0.8589300553002112,
                               0.49194382618963417,
                               2.53709717483727,
                               2.4889569599859827,
                               1.7334698168860687,
                               2.993507194602705,
                               2.9597925256063644],
                   'std': [0.6336557020138341,
                           0.1433950939440752,
                           0.12828653942567625,
                           0.10678160611067056,
                           0.3615089771869942,
                           0.09607149133881639,
                           0.10455927863153847]},
 'reg_em_top1_list': {'converged_': True,
                      'gate': [[1.0, 0.0],
                               [1.0, 0.0],
                               [1.0, 0.0],
                               [1.0, 0.0],
                               [1.0, 0.0],
                               [1.0, 0.0],
                               [1.0, 0.0]],
                      'loss_': 3.039440136952218,
                      'n_iter_': 3,
                      'predict': [35.33171717134566,
                                  -185.8306436554698,
                                  198.92630577703352,
                                  -106.05852298834738,
                                  14.185041963537289,
                                  91.08268992875708,
                                  49.15702226832499],
                      'std': [5.055625601404381,
                              5.055625601404629,
                              5.055625601404629,
                              5.055625601404449,
                              5.0556256014043734,
                              5.055625601404449,
                              5.055625601404359]},
 'reg_hard_em_list': {'converged_': True,
                      'gate': [[0.10323941951999518, 0.8967605804800048],
                               [0.11439431570329182, 0.8856056842967082],
                               [0.07747326308751609, 0.9225267369124839],
                               [0.14968256380538697, 0.8503174361946131],
                               [0.0912375783038349, 0.9087624216961652],
                               [0.159591264151411, 0.840408735848589],
                               [0.07072093897501838, 0.9292790610249816]],
                      'loss_': 0.1400751809516717,
                      'n_iter_': 7,
                      'predict': [1.236564227971989,
                                  1.2295891421700402,
                                  2.4145367258853696,
                                  1.9920834616232508,
                                  1.7006390029985852,
                                  2.4382323344556065,
                                  2.6344190235697074],
                      'std': [0.37003694569144074,
                              0.37148374393599015,
                              0.6688984012697902,
                              0.6717541126292178,
                              0.4947733542880813,
                              0.8726422956775819,
                              0.7064106117344562]}}
# fmt: on


def _cpu_has_avx2():
    try:
        return "avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.fixture(scope="module")
def observed():
    """Every configuration's observations, fitted in one subprocess with
    OpenBLAS's AVX2 kernels (see the module docstring)."""
    root = str(Path(__file__).resolve().parents[1])
    # the skmoe of this checkout, as in the tests' own process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])}
    if _cpu_has_avx2():
        env["OPENBLAS_CORETYPE"] = "Haswell"
    out = subprocess.run(
        [sys.executable, __file__, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pinned_predictions(name, observed):
    got = observed[name]
    want = PINNED[name]
    assert got.keys() == want.keys()
    assert got["n_iter_"] == want["n_iter_"]
    assert got["converged_"] == want["converged_"]
    for key in sorted(want):
        if key in ("n_iter_", "converged_"):
            continue
        other = MACHINE_DEPENDENT.get((name, key))
        if other is not None and np.allclose(got[key], other, rtol=RTOL, atol=1e-12):
            continue
        np.testing.assert_allclose(
            got[key], want[key], rtol=RTOL, atol=1e-12, err_msg=f"{name}: {key}"
        )


def test_pinned_clone_matches():
    """A clone of a pinned configuration, refitted, gives the same numbers."""
    from sklearn.base import clone

    model, X = _fit("clf_em_top1_clones")
    data, _ = CONFIGS["clf_em_top1_clones"]
    Xfit, yfit = DATA[data]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        again = clone(model).fit(Xfit, yfit)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert again.loss_ == model.loss_


def _record():
    import pprint

    pprint.pprint(
        {name: _observe(*_fit(name)) for name in sorted(CONFIGS)},
        width=88,
        sort_dicts=True,
    )


if __name__ == "__main__":
    if "--json" in sys.argv:
        print(json.dumps({name: _observe(*_fit(name)) for name in sorted(CONFIGS)}))
    else:
        np.set_printoptions(precision=17)
        _record()
