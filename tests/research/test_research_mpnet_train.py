"""Training the accurate variant's mpnet part (``research/mpnet_train.py``, outside the package):
fine-tuning, saving and reloading a head in torch, and the numpy labeller reading what torch saved.

They need torch and transformers (the ``finetune`` extra), which the test environment of
``make test`` leaves out (754 MB); they carry the ``training`` mark, ``make test`` deselects them
and ``make test-training`` (CI runs it) runs them in an environment with torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifiers import LABELS
from classifiers import mpnet as mp
from research import mpnet_train as mt
from tests.classifiers.test_classifier_mpnet import POSTS

pytestmark = pytest.mark.training


def _torch_base(top_layers: int = mp.TOP_LAYERS) -> mt._Base:
    return mt._Base(threads=2, top_layers=top_layers)


def _moved_head(base: mt._Base) -> object:
    """A "fine-tuned" head: every parameter of the published layers moved a little."""
    head = mt._build_head(base, len(LABELS), 0.0)
    torch = base.torch
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
    return head


def test_saved_differences_rebuild_the_fine_tuned_layers(tmp_path: Path) -> None:
    base = _torch_base()
    head = _moved_head(base)
    path = tmp_path / "m.mpnet.npz"
    mt.save_head(base, head, path)
    with np.load(path, allow_pickle=False) as data:
        assert data["layers.0.attention.attn.q.weight::q"].dtype == np.int8
        assert "out.weight" in data and data["out.weight"].dtype == np.float32
    rebuilt = mt.load_head(base, path, len(LABELS))
    for (name, a), (_, b) in zip(
        head.state_dict().items(), rebuilt.state_dict().items(), strict=True
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=3e-5, err_msg=name)
    states = base.states(POSTS)
    np.testing.assert_allclose(
        mt.head_proba(base, head, states), mt.head_proba(base, rebuilt, states), atol=1e-3
    )


def test_the_number_of_fine_tuned_layers_travels_with_the_weights(tmp_path: Path) -> None:
    base = _torch_base(top_layers=3)
    head = _moved_head(base)
    path = tmp_path / "three.mpnet.npz"
    mt.save_head(base, head, path)
    assert mp.saved_top_layers(path) == 3
    model = mp.MpnetTextModel(path, len(LABELS), threads=2)  # numpy, its base split by the file
    rebuilt = mt.load_head(base, path, len(LABELS))  # torch, from the same file
    np.testing.assert_allclose(
        model.predict_proba(POSTS), mt.head_proba(base, rebuilt, base.states(POSTS)), atol=1e-4
    )
    with pytest.raises(mp.MpnetUnavailableError, match="3 top layers, not 2"):
        mt.load_head(mt._Base(threads=2, top_layers=2), path, len(LABELS))
    with pytest.raises(ValueError, match="top_layers"):
        mt._Base(threads=2, top_layers=0)


def test_a_short_fine_tune_learns_a_tiny_set() -> None:
    base = _torch_base()
    texts = POSTS[:3] * 4
    y = np.asarray([2, 0, 1] * 4)
    states = base.states(texts)
    before = base.top[0].attention.attn.q.weight.detach().clone()
    cfg = mt.MpnetConfig(epochs=6, learning_rate=2e-4, batch_size=4)
    head = mt.train_head(base, states, y, len(LABELS), cfg, seed=0)
    proba = mt.head_proba(base, head, states)
    assert (proba.argmax(axis=1) == y).all()  # it fits what it saw
    assert not base.torch.equal(head.layers[0].attention.attn.q.weight, before)
    assert base.torch.equal(base.top[0].attention.attn.q.weight, before)  # base untouched
