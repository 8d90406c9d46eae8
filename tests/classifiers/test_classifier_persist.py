"""Saving and loading models: round trip; pickles, tampered files and foreign types refused."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from classifiers.model import LABELS, Classifier, LinearConfig, build_pipeline
from classifiers.persist import ModelLoadError, load, save, sha256_file, sidecar_path

TEXTS = [
    "Shop the sale now: 20% off with code SAVE20",
    "Pre-order the new phone today for $599",
    "What is your favourite summer memory? Tell us below!",
    "@anna Thanks for reaching out, please DM us your order number",
    "Congratulations to the class of 2020, you inspire us",
    "Our volunteers packed 10,000 meals for families in need",
] * 3
LABELS_OF = ["sales-pitch", "sales-pitch", "engaging", "engaging", "inspiring", "inspiring"] * 3


def _tiny_classifier() -> Classifier:
    linear = build_pipeline(LinearConfig(char_ngrams=False)).fit(TEXTS, LABELS_OF)
    return Classifier(linear=linear, labels=LABELS, class_bias=[0.0, 0.1, -0.1], version="test-1")


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return save(_tiny_classifier(), tmp_path / "m.skops", {"training_data_sha256": "abc"})


def test_round_trip_keeps_predictions_and_metadata(saved: Path) -> None:
    original = _tiny_classifier()
    loaded = load(saved)
    assert loaded.version == "test-1"
    assert loaded.labels == LABELS
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), original.predict_proba(TEXTS))
    side = json.loads(sidecar_path(saved).read_text("utf-8"))
    assert side["files"]["m.skops"] == sha256_file(saved)
    assert side["labels"] == list(LABELS)
    assert {"sklearn_version", "skops_version", "model_version", "training_data_sha256"} <= set(
        side
    )


class _WritesMarker:
    """Unpickling this runs ``open(marker, 'w')``: the payload a malicious model would carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _plant_pickle(path: Path, marker: Path, matching_sidecar_of: Path) -> None:
    path.write_bytes(pickle.dumps(_WritesMarker(str(marker))))
    side = json.loads(sidecar_path(matching_sidecar_of).read_text("utf-8"))
    side["files"] = {path.name: sha256_file(path)}  # even a sidecar that vouches for it
    sidecar_path(path).write_text(json.dumps(side), "utf-8")


def test_pickled_model_is_refused_and_its_code_never_runs(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.skops"
    _plant_pickle(evil, marker, saved)
    with pytest.raises(ModelLoadError, match="pickle"):
        load(evil)
    assert not marker.exists()


def test_pickle_swapped_in_for_a_saved_model_fails_the_hash(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    saved.write_bytes(pickle.dumps(_WritesMarker(str(marker))))
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load(saved)
    assert not marker.exists()


def test_tampered_bytes_are_refused(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load(saved)


def test_missing_sidecar_is_refused(saved: Path) -> None:
    os.remove(sidecar_path(saved))
    with pytest.raises(ModelLoadError, match="sidecar"):
        load(saved)


class Untrusted:
    pass


def test_untrusted_type_inside_a_skops_file_is_refused(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.skops"
    sio.dump({"format": "touchpoint-classifier/1", "linear": Untrusted()}, other)
    shutil.copy(sidecar_path(saved), sidecar_path(other))
    side = json.loads(sidecar_path(other).read_text("utf-8"))
    side["files"] = {other.name: sha256_file(other)}
    sidecar_path(other).write_text(json.dumps(side), "utf-8")
    with pytest.raises(ModelLoadError, match="not trusted"):
        load(other)


def test_tampered_onnx_of_the_shipped_model_is_refused(tmp_path: Path) -> None:
    from classifiers import DEFAULT_MODEL_PATH

    for src in DEFAULT_MODEL_PATH.parent.glob(DEFAULT_MODEL_PATH.stem + ".*"):
        shutil.copy(src, tmp_path / src.name)
    copy = tmp_path / DEFAULT_MODEL_PATH.name
    load(copy)  # intact copy loads
    onnx = copy.with_suffix(".onnx")
    data = bytearray(onnx.read_bytes())
    data[-100] ^= 0x01
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="default.onnx"):
        load(copy)
