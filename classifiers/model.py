"""The classifier: a linear model over n-grams and guideline cues, optionally fused with the
fine-tuned MiniLM (ONNX) probabilities, then per-class biases tuned for macro-F1."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from classifiers.encoder import OnnxTextModel
from classifiers.features import build_vectorizer

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("engaging", "inspiring", "sales-pitch")
DEFAULT_BATCH = 1000
# Characters of a post that are read: brand posts run to a few hundred, the MiniLM part sees
# its first 80 tokens only, and a huge post (untrusted input) must not cost more than this.
MAX_CHARS = 5000
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Prediction:
    """One post's label, the probability of that label, and every label's probability."""

    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LinearConfig:
    """Hyper-parameters of the linear part (chosen by grouped cross-validation)."""

    C: float = 2.0
    guideline_weight: float = 0.5
    char_ngrams: bool = True
    class_weight: str | None = "balanced"
    max_iter: int = 3000


def build_pipeline(config: LinearConfig | None = None) -> Pipeline:
    """TF-IDF word and character n-grams plus guideline cues, into a logistic regression."""
    cfg = config or LinearConfig()
    return Pipeline(
        [
            ("features", build_vectorizer(cfg.guideline_weight, cfg.char_ngrams)),
            (
                "clf",
                LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=cfg.max_iter),
            ),
        ]
    )


def apply_bias(proba: Array, bias: Sequence[float] | None) -> Array:
    """Multiply each class's probability by exp(bias) and renormalise (per-class thresholds)."""
    if bias is None or not np.any(bias):
        return proba
    scaled = proba * np.exp(np.asarray(bias, dtype=np.float64))[None, :]
    total = scaled.sum(axis=1, keepdims=True)
    return np.asarray(scaled / np.where(total > 0, total, 1.0))


def fuse(linear: Array, transformer: Array | None, weight: float) -> Array:
    """Weighted mean of the two probability matrices (``weight`` on the transformer)."""
    if transformer is None or weight <= 0:
        return linear
    return np.asarray((1.0 - weight) * linear + weight * transformer)


def fuse_all(parts: Sequence[Array], weights: Sequence[float]) -> Array:
    """Weighted mean of any number of probability matrices (weights sum to 1)."""
    return np.asarray(sum(w * p for w, p in zip(weights, parts, strict=True)))


class ProbaModel(Protocol):
    def predict_proba(self, texts: Sequence[str]) -> Array: ...


class Classifier:
    """Labels posts; ``predict`` works in batches and returns one :class:`Prediction` a post."""

    def __init__(
        self,
        linear: Pipeline,
        labels: Sequence[str] = LABELS,
        transformer: OnnxTextModel | None = None,
        transformer_weight: float = 0.0,
        class_bias: Sequence[float] | None = None,
        version: str = "",
        accurate: ProbaModel | None = None,
        accurate_weights: Sequence[float] = (),
    ) -> None:
        self.linear = linear
        # The optional accurate part (classifiers.mpnet); when set, linear, MiniLM and it are
        # averaged with ``accurate_weights`` instead of the two-part ``transformer_weight``.
        self.accurate = accurate
        self.accurate_weights = tuple(accurate_weights)
        if accurate is not None and (transformer is None or len(self.accurate_weights) != 3):
            raise ValueError("the accurate part needs the MiniLM part and three fusion weights")
        self.labels = tuple(labels)
        self.transformer = transformer
        self.transformer_weight = transformer_weight if transformer is not None else 0.0
        self.class_bias = list(class_bias) if class_bias is not None else [0.0] * len(labels)
        self.version = version
        self._check_labels()

    def _check_labels(self) -> None:
        classes = [str(c) for c in getattr(self.linear, "classes_", self.labels)]
        if classes != list(self.labels):
            raise ValueError(f"model classes {classes} differ from labels {list(self.labels)}")

    def predict_proba(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> Array:
        """Probabilities (len(texts) x labels) after fusion and per-class bias; each text is
        read up to :data:`MAX_CHARS`."""
        texts = [t[:MAX_CHARS] for t in texts]
        if not texts:
            return np.zeros((0, len(self.labels)))
        parts = [
            self._proba_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)
        ]
        return np.vstack(parts)

    def _proba_batch(self, texts: list[str]) -> Array:
        linear = np.asarray(self.linear.predict_proba(texts), dtype=np.float64)
        if self.accurate is not None and self.transformer is not None:
            parts = [linear, self.transformer.predict_proba(texts)]
            fused = fuse_all([*parts, self.accurate.predict_proba(texts)], self.accurate_weights)
            return apply_bias(fused, self.class_bias)
        neural = None
        if self.transformer is not None and self.transformer_weight > 0:
            neural = self.transformer.predict_proba(texts)
        return apply_bias(fuse(linear, neural, self.transformer_weight), self.class_bias)

    def predict(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> list[Prediction]:
        """One prediction per text, in order."""
        proba = self.predict_proba(texts, batch_size)
        return [self._prediction(row) for row in proba]

    def predict_labels(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> list[str]:
        """Only the labels, in order."""
        proba = self.predict_proba(texts, batch_size)
        return [self.labels[int(i)] for i in proba.argmax(axis=1)]

    def _prediction(self, row: Array) -> Prediction:
        best = int(row.argmax())
        probs = {label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)}
        return Prediction(label=self.labels[best], confidence=float(row[best]), probabilities=probs)
