"""Saving and loading a :class:`~classifiers.model.Classifier` safely.

A model is a set of files sharing a stem (``default.skops`` ...):

- ``STEM.skops``: the linear pipeline and fusion settings, written by skops (never pickle/joblib);
  loaded with an explicit list of trusted types, anything else is refused;
- ``STEM.onnx`` and ``STEM.tokenizer.json`` (optional): the fine-tuned MiniLM run by onnxruntime;
- ``STEM.mpnet.npz`` (optional): the accurate part's fine-tuned mpnet layers
  (:mod:`classifiers.mpnet`), used only when asked for (``accurate=True``);
- ``STEM.json``: the sidecar: model version, scikit-learn and skops versions, training-data sha256,
  labels, metrics, and the sha256 of every model file, checked before anything is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sklearn

from classifiers.encoder import OnnxTextModel
from classifiers.model import Classifier

log = logging.getLogger(__name__)

FORMAT = "touchpoint-classifier/1"
# The only types outside skops' own scikit-learn/numpy defaults that a model may contain.
TRUSTED_TYPES: tuple[str, ...] = (
    "classifiers.features.GuidelineFeatures",
    "classifiers.features.clean_text",
)
PICKLE_MAGIC = (b"\x80", b"(", b"c")  # protocol 2+ opcode, protocol 0 MARK / GLOBAL


class ModelLoadError(Exception):
    """A model file set cannot be used: missing, tampered with, or of an unsafe format."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(parts: list[str]) -> str:
    """Hash of training data: texts and labels, in order, newline-separated."""
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _skops() -> Any:
    return importlib.import_module("skops.io")


def _strip_stop_words(estimator: Any) -> None:
    """Drop fitted TF-IDF ``stop_words_`` (every pruned n-gram; only for introspection, large)."""
    for vec in _tfidf_parts(estimator):
        if hasattr(vec, "stop_words_"):
            delattr(vec, "stop_words_")


def _tfidf_parts(estimator: Any) -> list[Any]:
    found = []
    if hasattr(estimator, "stop_words_"):
        found.append(estimator)
    for _, child in getattr(estimator, "steps", []):
        found += _tfidf_parts(child)
    for _, child, *_ in getattr(estimator, "transformer_list", []):
        found += _tfidf_parts(child)
    return found


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def onnx_paths(model_path: Path) -> tuple[Path, Path]:
    return model_path.with_suffix(".onnx"), model_path.with_suffix(".tokenizer.json")


def mpnet_path(model_path: Path) -> Path:
    return model_path.with_suffix(".mpnet.npz")


def save(
    classifier: Classifier,
    path: Path,
    metadata: Mapping[str, Any],
    transformer_files: tuple[Path, Path] | None = None,
    mpnet_file: Path | None = None,
) -> Path:
    """Write ``path`` (.skops) and its sidecar; copy the ONNX and mpnet files beside it if given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "linear": classifier.linear,
        "labels": list(classifier.labels),
        "transformer_weight": float(classifier.transformer_weight),
        "class_bias": [float(b) for b in classifier.class_bias],
        "accurate_weights": [float(w) for w in classifier.accurate_weights],
    }
    _strip_stop_words(classifier.linear)
    with _written_whole(path) as partial:
        _skops().dump(state, partial, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    files = {path.name: sha256_file(path)}
    copies: list[tuple[Path, Path]] = []
    if transformer_files is not None:
        copies += zip(transformer_files, onnx_paths(path), strict=True)
    if mpnet_file is not None:
        copies.append((mpnet_file, mpnet_path(path)))
    for src, dst in copies:
        if Path(src).resolve() != dst.resolve():
            with _written_whole(dst) as partial:
                shutil.copyfile(src, partial)
        files[dst.name] = sha256_file(dst)
    side = {
        **dict(metadata),
        "format": FORMAT,
        "labels": list(classifier.labels),
        "model_version": classifier.version,
        "sklearn_version": sklearn.__version__,
        "skops_version": importlib.import_module("skops").__version__,
        "files": files,
    }
    with _written_whole(sidecar_path(path)) as partial:
        partial.write_text(json.dumps(side, indent=2, sort_keys=True) + "\n", "utf-8")
    log.info("saved model %s (%s)", path, classifier.version)
    return path


@contextlib.contextmanager
def _written_whole(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write, renamed over ``path`` when the block ends
    without an error: a training killed while it saves leaves the old model file whole."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(Path(path))
    if not side.is_file():
        raise ModelLoadError(f"no sidecar {side.name} beside {Path(path).name}; refusing to load")
    try:
        data = json.loads(side.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"sidecar {side} is not valid JSON") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelLoadError(f"sidecar {side} is not a {FORMAT} sidecar")
    return data


def _verify_hashes(path: Path, side: Mapping[str, Any]) -> None:
    files = side.get("files")
    if not isinstance(files, dict) or path.name not in files:
        raise ModelLoadError(f"sidecar lists no sha256 for {path.name}")
    for name, expected in files.items():
        target = path.parent / str(name)
        if not target.is_file():
            raise ModelLoadError(f"model file missing: {target}")
        actual = sha256_file(target)
        if actual != expected:
            raise ModelLoadError(
                f"sha256 mismatch for {target.name}: expected {expected}, got {actual}; "
                "the file was changed after it was saved"
            )


def _check_format(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:1] in PICKLE_MAGIC and not head.startswith(b"PK"):
        raise ModelLoadError(f"{path.name} looks like a pickle; pickled models are never loaded")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path.name} is not a skops file")


def _check_types(path: Path) -> None:
    untrusted = set(_skops().get_untrusted_types(file=path))
    unknown = sorted(untrusted - set(TRUSTED_TYPES))
    if unknown:
        raise ModelLoadError(f"{path.name} contains types that are not trusted: {unknown}")


def check(path: Path) -> None:
    """What :func:`load` checks before it reads anything: the file is there, its sidecar, every
    sha256 and the format (no pickle). Quick: nothing is loaded. Raises :class:`ModelLoadError`."""
    _checked(Path(path), verify=True)


def _checked(path: Path, verify: bool) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    side = read_sidecar(path)
    if verify:
        _verify_hashes(path, side)
    _check_format(path)
    return side


def load(path: Path, verify: bool = True, accurate: bool = False) -> Classifier:
    """Load a model saved by :func:`save`; raises :class:`ModelLoadError` if unsafe or changed.

    ``accurate`` adds the mpnet part (:mod:`classifiers.mpnet`, numpy; its base weights load on
    first use).
    """
    path = Path(path)
    side = _checked(path, verify)
    _check_types(path)
    try:
        state = _skops().load(path, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # skops raises several types for a corrupt file
        raise ModelLoadError(f"cannot read {path.name}: {exc}") from exc
    return _from_state(path, state, side, accurate)


def _accurate_part(path: Path, state: Mapping[str, Any], side: Mapping[str, Any]) -> Any:
    weights = mpnet_path(path)
    if weights.name not in side.get("files", {}) or len(state.get("accurate_weights", [])) != 3:
        raise ModelLoadError(
            f"{path.name} has no accurate part; train one with research.mpnet_train"
        )
    from classifiers import mpnet

    try:
        mpnet.check_available()
    except mpnet.MpnetUnavailableError as exc:
        raise ModelLoadError(str(exc)) from exc
    return mpnet.MpnetTextModel(weights, len(state["labels"]))


def _accurate_version(path: Path, side: Mapping[str, Any]) -> str:
    """``+mpnet-<sha256 prefix of the weights>``: labels say which accurate part wrote them."""
    return f"+mpnet-{str(side['files'][mpnet_path(path).name])[:8]}"


def _from_state(path: Path, state: Any, side: Mapping[str, Any], accurate: bool) -> Classifier:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelLoadError(f"{path.name} is not a {FORMAT} model")
    onnx, tok = onnx_paths(path)
    files = side.get("files", {})
    transformer = OnnxTextModel(onnx, tok) if onnx.name in files else None
    if accurate and transformer is None:
        raise ModelLoadError(f"{path.name} has no MiniLM part, so no accurate variant")
    part = _accurate_part(path, state, side) if accurate else None
    return Classifier(
        linear=state["linear"],
        labels=state["labels"],
        transformer=transformer,
        transformer_weight=float(state["transformer_weight"]),
        class_bias=state["class_bias"],
        version=str(side.get("model_version", ""))
        + (_accurate_version(path, side) if accurate else ""),
        accurate=part,
        accurate_weights=state.get("accurate_weights", []) if accurate else (),
    )
