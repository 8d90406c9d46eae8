"""The shipped model: loads once, predicts one labelled Prediction per post, in batches."""

from __future__ import annotations

import numpy as np
import pytest

import classifiers
from classifiers import LABELS, Prediction, load_default
from classifiers.evaluate import evaluate
from classifiers.features import FEATURE_NAMES, clean_text, guideline_vector
from classifiers.model import MAX_CHARS

POSTS = [
    "Shop our summer sale: 30% off everything with code SUN30. Link in bio!",
    "What's your favourite way to unwind at home? Tell us below 👇",
    "Today we honour the nurses and doctors on the front line. Thank you. ❤️",
    "@jane_doe Sorry to hear that! Please DM us your order number and we'll help.",
    "We're proud to announce record Q2 revenue, up 12%. Read the release: https://t.co/x",
    "",
]


def test_load_default_is_cached() -> None:
    assert load_default() is load_default()
    assert classifiers.DEFAULT_MODEL_PATH.is_file()


def test_predict_shapes_and_labels() -> None:
    clf = load_default()
    preds = clf.predict(POSTS, batch_size=4)
    assert len(preds) == len(POSTS)
    for p in preds:
        assert isinstance(p, Prediction)
        assert p.label in LABELS
        assert set(p.probabilities) == set(LABELS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.confidence == pytest.approx(max(p.probabilities.values()), abs=1e-5)
    assert clf.predict([]) == []


def test_batches_barely_change_results() -> None:
    # int8 dynamic quantisation scales activations per ONNX batch: tiny, bounded differences.
    clf = load_default()
    whole = clf.predict_proba(POSTS, batch_size=1000)
    split = clf.predict_proba(POSTS, batch_size=2)
    np.testing.assert_allclose(whole, split, atol=0.03)
    assert (whole.argmax(1) == split.argmax(1)).all()
    np.testing.assert_allclose(whole, clf.predict_proba(POSTS, batch_size=1000), atol=1e-9)


def test_a_huge_post_is_read_up_to_max_chars_only() -> None:
    # a 1 MB post (untrusted input) costs what its first MAX_CHARS do, and labels like them
    clf = load_default()
    head = (POSTS[1] + " ") * (MAX_CHARS // len(POSTS[1]) + 1)
    huge = head[:MAX_CHARS] + POSTS[0] * (1_000_000 // len(POSTS[0]))
    np.testing.assert_allclose(
        clf.predict_proba([huge]), clf.predict_proba([head[:MAX_CHARS]]), atol=1e-9
    )


def test_obvious_posts() -> None:
    labels = load_default().predict_labels(POSTS[:4])
    assert labels[0] == "sales-pitch"
    assert labels[1] == "engaging"
    assert labels[2] == "inspiring"
    assert labels[3] == "engaging"


def test_evaluate_reports_the_agreed_keys() -> None:
    out = evaluate(load_default(), POSTS[:4], ["sales-pitch", "engaging", "inspiring", "engaging"])
    assert set(out) == {"macro_f1", "accuracy", "per_class", "n"}
    assert out["n"] == 4
    with pytest.raises(ValueError, match="unknown labels"):
        evaluate(load_default(), ["x"], ["spam"])


def test_features_are_finite_and_named() -> None:
    assert clean_text("a &amp; b https://t.co/xyz  c") == "a & b URL c"
    vec = guideline_vector("Buy now for $5! Use code SAVE5 #deal @friend https://t.co/a")
    assert len(vec) == len(FEATURE_NAMES)
    assert all(np.isfinite(vec))
