"""Scores: per-class precision / recall / F1, confusion matrix, grouped cross-validation by account
and per-class bias (threshold) tuning for macro-F1.

Only real posts are ever scored. Extra examples (other real sources, written examples) may be added
to a training fold, but never one from an account of the test fold, and never to a test fold.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedGroupKFold

from classifiers.model import LABELS

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
N_SPLITS = 5
CV_SEEDS: tuple[int, ...] = (0, 1, 2)
BIAS_GRID: tuple[float, ...] = tuple(np.round(np.arange(-1.5, 1.51, 0.1), 2))


def read_labelled(path: Path) -> list[tuple[str, str]]:
    """The (text, label) rows of a user's labelled CSV: columns ``text`` and ``label`` (any case
    and spacing; other columns ignored), UTF-8 with or without the BOM Excel writes; rows with no
    text are skipped. ``ValueError`` naming the file, the line and the fix otherwise."""
    rows: list[tuple[str, str]] = []
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [(name or "").strip().lower() for name in reader.fieldnames or ()]
            if not {"text", "label"} <= set(header):
                raise ValueError(
                    f"{path}: needs the columns text and label (its first line has: "
                    f"{', '.join(header) or 'nothing'}). Fix: make the first line text,label"
                )
            reader.fieldnames = header
            for row in reader:
                text = row.get("text") or ""
                if text.strip():
                    rows.append((text, _label(path, reader.line_num, row.get("label"))))
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: is not UTF-8 text. Fix: save it as UTF-8 (in Excel: CSV UTF-8)"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{path}: is not a readable CSV ({exc}). Fix: save it as CSV") from None
    if not rows:
        raise ValueError(f"{path}: no labelled posts in it. Fix: add rows of text,label")
    return rows


def _label(path: Path, line: int, value: str | None) -> str:
    label = (value or "").strip()
    if label not in LABELS:
        raise ValueError(
            f"{path}: line {line}: {label!r} is not a label. Fix: use one of {', '.join(LABELS)}"
        )
    return label


class ProbaModel(Protocol):
    labels: tuple[str, ...]

    def predict_labels(self, texts: Sequence[str], batch_size: int = ...) -> list[str]: ...


@dataclass(frozen=True)
class Fold:
    train: Array
    test: Array


def grouped_folds(labels: Sequence[str], groups: Sequence[str], seed: int = 0) -> list[Fold]:
    """Stratified folds in which no group (account) is in both the train and the test part."""
    y = np.asarray(labels)
    g = np.asarray(groups)
    splitter = StratifiedGroupKFold(n_splits=N_SPLITS, shuffle=True, random_state=seed)
    folds = [Fold(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y, g)]
    for fold in folds:
        if set(g[fold.train]) & set(g[fold.test]):  # pragma: no cover - guarded by sklearn
            raise RuntimeError("an account is in both the train and the test fold")
    return folds


def report(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """``macro_f1``, ``accuracy``, ``per_class`` (precision/recall/f1/support), confusion, ``n``."""
    labs = list(labels)
    p, r, f, s = precision_recall_fscore_support(
        list(y_true), list(y_pred), labels=labs, zero_division=0
    )
    per_class = {
        lab: {
            "precision": round(float(p[i]), 4),
            "recall": round(float(r[i]), 4),
            "f1": round(float(f[i]), 4),
            "support": int(s[i]),
        }
        for i, lab in enumerate(labs)
    }
    cm = confusion_matrix(list(y_true), list(y_pred), labels=labs)
    return {
        "macro_f1": round(float(np.mean(f)), 4),
        "accuracy": round(float(accuracy_score(list(y_true), list(y_pred))), 4),
        "per_class": per_class,
        "confusion": {"labels": labs, "matrix": cm.tolist()},
        "n": len(y_true),
    }


def evaluate(model: ProbaModel, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Score a trained model on labelled posts (e.g. a user's CSV): exactly ``macro_f1``,
    ``accuracy``, ``per_class`` (label -> precision, recall, f1, support) and ``n``."""
    unknown = sorted(set(labels) - set(model.labels))
    if unknown:
        raise ValueError(f"unknown labels {unknown}; expected one of {list(model.labels)}")
    predicted = model.predict_labels(list(texts))
    full = report(labels, predicted, model.labels)
    return {key: full[key] for key in ("macro_f1", "accuracy", "per_class", "n")}


def macro_f1_of(proba: Array, y: Array, bias: Array) -> float:
    pred = (np.log(np.clip(proba, 1e-12, None)) + bias).argmax(axis=1)
    k = proba.shape[1]
    f1s = []
    for c in range(k):
        tp = float(np.sum((pred == c) & (y == c)))
        denom = float(np.sum(pred == c) + np.sum(y == c))
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def tune_bias(proba: Array, y: Array, rounds: int = 2) -> Array:
    """Per-class log-probability offsets maximising macro-F1 (coordinate search, class 0 fixed)."""
    bias = np.zeros(proba.shape[1])
    for _ in range(rounds):
        for c in range(1, proba.shape[1]):
            best, best_v = macro_f1_of(proba, y, bias), bias[c]
            for v in BIAS_GRID:
                bias[c] = v
                score = macro_f1_of(proba, y, bias)
                if score > best + 1e-9:
                    best, best_v = score, v
            bias[c] = best_v
    return bias


FitPredict = Callable[[list[str], list[str], list[str]], Array]


def oof_proba(
    texts: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    fit_predict: FitPredict,
    seed: int = 0,
    extra: Sequence[tuple[str, str, str]] = (),
) -> Array:
    """Out-of-fold probabilities over real posts.

    ``fit_predict(train_texts, train_labels, test_texts)`` returns test probabilities. ``extra`` is
    (text, label, account) added to every training fold except rows of a test-fold account.
    """
    tx, ys, gs = list(texts), list(labels), np.asarray(groups)
    out: Array | None = None
    for k, fold in enumerate(grouped_folds(ys, list(groups), seed)):
        held_out = set(gs[fold.test])
        add = [(t, lab) for t, lab, acc in extra if acc not in held_out]
        train_t = [tx[i] for i in fold.train] + [t for t, _ in add]
        train_y = [ys[i] for i in fold.train] + [lab for _, lab in add]
        proba = fit_predict(train_t, train_y, [tx[i] for i in fold.test])
        if out is None:
            out = np.zeros((len(tx), proba.shape[1]))
        out[fold.test] = proba
        log.info(
            "seed %d fold %d: %d train (%d extra), %d test",
            seed,
            k,
            len(train_t),
            len(add),
            len(fold.test),
        )
    assert out is not None
    return out


def nested_bias(proba: Array, y: Array, groups: Sequence[str], seed: int) -> Array:
    """Predictions where each test fold's bias is tuned on the other folds' OOF probabilities."""
    pred = np.zeros(len(y), dtype=int)
    for fold in grouped_folds([str(v) for v in y], list(groups), seed):
        bias = tune_bias(proba[fold.train], y[fold.train])
        pred[fold.test] = (np.log(np.clip(proba[fold.test], 1e-12, None)) + bias).argmax(axis=1)
    return pred
