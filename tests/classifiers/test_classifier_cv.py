"""Grouped cross-validation: no account in both folds; extra and written posts never scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifiers import evaluate as ev
from classifiers.train import load_brand_posts, load_extra, load_written


def test_grouped_folds_never_share_an_account() -> None:
    brand = load_brand_posts()
    labels = [e.label for e in brand]
    groups = np.asarray([e.account for e in brand])
    for seed in ev.CV_SEEDS:
        folds = ev.grouped_folds(labels, list(groups), seed)
        assert len(folds) == ev.N_SPLITS
        seen_test: set[int] = set()
        for fold in folds:
            assert not set(groups[fold.train]) & set(groups[fold.test])
            seen_test |= set(fold.test.tolist())
        assert seen_test == set(range(len(brand)))  # every real post scored exactly once


def test_extra_and_written_posts_only_join_training_folds() -> None:
    brand = load_brand_posts()[:400]
    extra = load_extra()
    written = load_written()
    assert written and all(e.written for e in written)
    brand_texts = {e.text for e in brand}
    rows = [(e.text, e.label, e.account) for e in [*extra, *written]]
    rows.append(("extra post from a scored account", "engaging", brand[0].account))
    calls: list[tuple[list[str], list[str]]] = []

    def fit_predict(train_t: list[str], train_y: list[str], test_t: list[str]) -> np.ndarray:
        calls.append((train_t, test_t))
        return np.full((len(test_t), 3), 1 / 3)

    texts = [e.text for e in brand]
    groups = [e.account for e in brand]
    proba = ev.oof_proba(texts, [e.label for e in brand], groups, fit_predict, 0, rows)
    assert proba.shape == (len(brand), 3)
    written_texts = {e.text for e in written}
    for train_t, test_t in calls:
        assert set(test_t) <= brand_texts
        assert not set(test_t) & written_texts
        assert written_texts <= set(train_t)
    holding = [c for c in calls if brand[0].text in c[1]]
    assert holding and "extra post from a scored account" not in holding[0][0]


def test_report_keys_and_values() -> None:
    rep = ev.report(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])
    assert {"macro_f1", "accuracy", "per_class", "n", "confusion"} <= set(rep)
    assert rep["n"] == 3
    assert rep["accuracy"] == round(2 / 3, 4)
    assert rep["confusion"]["matrix"] == [[1, 0], [1, 1]]


def test_tune_bias_improves_or_keeps_macro_f1() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    proba[np.arange(300), y] += 0.3
    proba[:, 1] += 0.5
    proba /= proba.sum(1, keepdims=True)
    zero = ev.macro_f1_of(proba, y, np.zeros(3))
    assert ev.macro_f1_of(proba, y, ev.tune_bias(proba, y)) >= zero


def test_data_readme_names_sources() -> None:
    readme = (Path(ev.__file__).parent / "data" / "README.md").read_text("utf-8")
    for name in ("brand_posts_labeled.csv", "labelled_extra.csv", "written_examples.csv"):
        assert name in readme
