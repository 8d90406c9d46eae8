"""Post classifier: labels a brand's own posts engaging, inspiring or sales-pitch.

Public API::

    from classifiers import LABELS, load_default
    clf = load_default()                 # loaded once per process
    clf = load_default(accurate=True)    # + the optional mpnet part (the ``accurate`` extra)
    preds = clf.predict(["Shop now: 20% off!"])
    preds[0].label, preds[0].confidence, preds[0].probabilities

Scoring a labelled CSV: ``classifiers.evaluate.evaluate(model, texts, labels)``.
Retraining: ``python -m classifiers.train [--data extra.csv]``.

This package never imports ``monitor``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from classifiers.model import LABELS, Classifier, Prediction
from classifiers.persist import ModelLoadError, check, load

__all__ = [
    "DEFAULT_MODEL_PATH",
    "LABELS",
    "Classifier",
    "ModelLoadError",
    "Prediction",
    "check",
    "load",
    "load_default",
]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "default.skops"

_lock = threading.Lock()
_cache: dict[tuple[Path, bool], Classifier] = {}


def load_default(path: Path | None = None, accurate: bool = False) -> Classifier:
    """The shipped model (or ``path``), loaded and verified once per process, then reused.

    ``accurate=True`` adds the optional mpnet part, run in numpy without torch (the ``accurate``
    extra: the mpnet weight packages and safetensors; slower, more accurate, see MODEL_CARD.md).
    """
    key = (Path(path or DEFAULT_MODEL_PATH).resolve(), accurate)
    with _lock:
        if key not in _cache:
            _cache[key] = load(key[0], accurate=accurate)
        return _cache[key]
