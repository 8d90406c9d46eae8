"""The fine-tuned MiniLM post classifier, run from an ONNX file by onnxruntime (no torch).

The ONNX graph takes ``input_ids`` and ``attention_mask`` (int64, batch x tokens) and returns class
probabilities (batch x labels). Texts are cleaned with :func:`classifiers.features.clean_text`,
tokenized with the WordPiece tokenizer shipped beside the model, sorted by length and padded per
batch, so short posts cost little.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.features import clean_text

log = logging.getLogger(__name__)

MAX_TOKENS = 80
Array = np.ndarray[Any, Any]


class EncoderUnavailableError(RuntimeError):
    """onnxruntime or tokenizers is not installed, or the model files are missing."""


def require(name: str, purpose: str, error: type[Exception] = RuntimeError) -> Any:
    """Import an optional module, or raise ``error`` naming it and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise error(f"{purpose} needs '{name}'") from exc


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EncoderUnavailableError(
            f"the transformer part of the classifier needs the '{name}' package"
        ) from exc


def load_tokenizer(path: Path, max_tokens: int) -> Any:
    """A ``tokenizers`` tokenizer from its JSON file, cutting texts at ``max_tokens`` tokens and
    padding nothing (:func:`pad_batch` pads each batch to its longest text)."""
    tok = _import("tokenizers").Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_tokens)
    return tok


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Array, Array]:
    """Token ids padded with ``pad_id`` to the longest of the batch, and their 0/1 mask."""
    width = max(len(ids) for ids in token_ids)
    padded = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros_like(padded)
    for row, ids in enumerate(token_ids):
        padded[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return padded, mask


class OnnxTextModel:
    """Class probabilities from an ONNX sequence classifier; the session is created lazily."""

    def __init__(
        self, model_path: Path, tokenizer_path: Path, max_tokens: int = MAX_TOKENS
    ) -> None:
        self.model_path = Path(model_path)
        self.tokenizer_path = Path(tokenizer_path)
        self.max_tokens = max_tokens
        self._session: Any = None
        self._tokenizer: Any = None

    def _ensure_loaded(self) -> None:
        if self._session is not None:
            return
        for path in (self.model_path, self.tokenizer_path):
            if not path.is_file():
                raise EncoderUnavailableError(f"model file missing: {path}")
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.model_path), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = load_tokenizer(self.tokenizer_path, self.max_tokens)
        log.debug("loaded ONNX classifier %s", self.model_path.name)

    def _run_batch(self, token_ids: Sequence[Sequence[int]]) -> Array:
        input_ids, mask = pad_batch(token_ids)
        out = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return np.asarray(out[0], dtype=np.float64)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> Array:
        """Probabilities (len(texts) x labels), in the order of ``texts``."""
        self._ensure_loaded()
        if not texts:
            return np.zeros((0, 0))
        encoded = self._tokenizer.encode_batch([clean_text(t) for t in texts])
        ids = [e.ids for e in encoded]
        order = np.argsort([len(i) for i in ids], kind="stable")
        result: Array | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            proba = self._run_batch([ids[i] for i in idx])
            if result is None:
                result = np.zeros((len(texts), proba.shape[1]))
            result[idx] = proba
        assert result is not None
        return result
