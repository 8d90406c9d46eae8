"""Fine-tuning the accurate part (research code, not part of the installed package): torch and
transformers, the ``finetune`` extra.

``python -m research.mpnet_train [--cv-seeds 0 1]`` (from a source checkout) runs :func:`main`:
grouped CV (out-of-fold probabilities for the card, ``classifiers/models/mpnet_oof.npz``), then a
fit on everything, written by :func:`save_head` as ``default.mpnet.npz``. Labelling never comes
here: :mod:`classifiers.mpnet` runs the saved file in numpy. Imports are dynamic so that this
module imports and type-checks without torch.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.encoder import require
from classifiers.features import clean_text
from classifiers.mpnet import (
    HIDDEN,
    INSTALL_HINT,
    MAX_TOKENS,
    N_LAYERS,
    TOP_LAYERS,
    MpnetUnavailableError,
    base_model_dir,
    saved_top_layers,
)
from research.finetune import FinetuneConfig, fit_module

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
TRAIN_HINT = f"pip install torch==2.13.0 'touchpoint-monitor[finetune]', then {INSTALL_HINT}"

# Same recipe as the MiniLM fine-tuning (4 epochs, 5e-5, batches of 16, 80 tokens).
MpnetConfig = FinetuneConfig


def _mod(name: str) -> Any:
    return require(name, f"fine-tuning the accurate part ({TRAIN_HINT})", MpnetUnavailableError)


class _Base:
    """Tokenizer and the lower, frozen layers of the published model: texts to hidden states.

    The top ``top_layers`` (``TOP_LAYERS`` by default) are set apart in ``top`` for fine-tuning;
    the rest stay frozen.
    """

    def __init__(self, threads: int, top_layers: int = TOP_LAYERS) -> None:
        if not 1 <= top_layers <= N_LAYERS:
            raise ValueError(f"top_layers must be 1..{N_LAYERS}, not {top_layers}")
        self.top_layers = top_layers
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never ask the hub
        self.torch = _mod("torch")
        transformers = _mod("transformers")
        transformers.utils.logging.disable_progress_bar()  # no bars in the daemon's log
        self.torch.set_num_threads(threads)
        path = str(base_model_dir())
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModel.from_pretrained(path).eval()
        self.top = [model.encoder.layer[i] for i in range(N_LAYERS - top_layers, N_LAYERS)]
        self.relative_bias = model.encoder.relative_attention_bias
        self.config = model.config
        model.encoder.layer = model.encoder.layer[: N_LAYERS - top_layers]
        self.model = model

    def states(self, texts: Sequence[str]) -> list[Any]:
        """One (tokens x 768) tensor of hidden states per text at the first fine-tuned layer's
        input, computed in length order."""
        out: list[Any] = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with self.torch.no_grad():
            for start in range(0, len(order), 32):
                idx = order[start : start + 32]
                batch = self.tokenizer(
                    [clean_text(texts[i]) for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                lengths = batch["attention_mask"].sum(dim=1)
                for row, i in enumerate(idx):
                    out[int(i)] = hidden[row, : int(lengths[row])].clone()
        return out


def _build_head(base: _Base, n_labels: int, dropout: float) -> Any:
    """Copies of the top layers and their position table, mean pooling and a linear head."""
    torch = base.torch
    nn = torch.nn
    masking = _mod("transformers.masking_utils")

    def init(self: Any) -> None:
        nn.Module.__init__(self)
        self.layers = nn.ModuleList([copy.deepcopy(layer) for layer in base.top])
        self.bias = copy.deepcopy(base.relative_bias)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(HIDDEN, n_labels)

    def forward(self: Any, x: Any, att: Any) -> Any:
        length = x.size(1)
        rel = torch.arange(length)[None, :] - torch.arange(length)[:, None]
        bucket = base.model.encoder.relative_position_bucket(rel, num_buckets=32)
        bias = self.bias(bucket).permute([2, 0, 1]).unsqueeze(0)
        bias = bias.expand(x.size(0), -1, length, length).contiguous()
        mask = masking.create_bidirectional_mask(
            config=base.config, inputs_embeds=x, attention_mask=att
        )
        for layer in self.layers:
            x = layer(x, mask, bias)[0]
        weights = att.unsqueeze(-1).float()
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.out(self.drop(pooled))

    cls = type("MpnetTopClassifier", (nn.Module,), {"__init__": init, "forward": forward})
    return cls()


def _pad(torch: Any, states: Sequence[Any]) -> tuple[Any, Any]:
    width = max(int(s.shape[0]) for s in states)
    x = torch.zeros(len(states), width, HIDDEN)
    att = torch.zeros(len(states), width, dtype=torch.long)
    for row, s in enumerate(states):
        x[row, : s.shape[0]] = s
        att[row, : s.shape[0]] = 1
    return x, att


def train_head(
    base: _Base, states: Sequence[Any], y: Array, n_labels: int, cfg: MpnetConfig, seed: int
) -> Any:
    """Fine-tune the top layers and head with class-balanced cross-entropy."""
    torch = base.torch
    torch.manual_seed(seed)
    head = _build_head(base, n_labels, cfg.dropout)
    fit_module(
        torch, head, lambda idx: _pad(torch, [states[i] for i in idx]), y, n_labels, cfg, seed
    )
    return head


def head_proba(base: _Base, head: Any, states: Sequence[Any], batch_size: int = 64) -> Array:
    torch = base.torch
    order = np.argsort([int(s.shape[0]) for s in states], kind="stable")
    result = np.zeros((len(states), int(head.out.out_features)))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, att = _pad(torch, [states[i] for i in idx])
            result[idx] = torch.softmax(head(x, att), dim=-1).numpy()
    return result


def _base_tensors(base: _Base) -> dict[str, Any]:
    """The published counterparts of the head's parameters, by the head's parameter names."""
    found: dict[str, Any] = {"bias.weight": base.relative_bias.weight}
    for i, layer in enumerate(base.top):
        for name, tensor in layer.state_dict().items():
            found[f"layers.{i}.{name}"] = tensor
    return found


def save_head(base: _Base, head: Any, path: Path) -> None:
    """Write what fine-tuning changed: int8 row-scaled differences for matrices, float32 else."""
    published = _base_tensors(base)
    arrays: dict[str, Array] = {"top_layers": np.asarray(base.top_layers, dtype=np.int64)}
    for name, tensor in head.state_dict().items():
        value = tensor.detach().numpy().astype(np.float32)
        if name in published and value.ndim == 2:
            delta = value - published[name].detach().numpy().astype(np.float32)
            scale = np.abs(delta).max(axis=1) / 127.0
            scale[scale == 0] = 1.0
            arrays[f"{name}::q"] = np.round(delta / scale[:, None]).astype(np.int8)
            arrays[f"{name}::scale"] = scale.astype(np.float32)
        else:
            arrays[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    log.info("saved %s (%.1f MB)", path.name, path.stat().st_size / 1e6)


def load_head(base: _Base, path: Path, n_labels: int) -> Any:
    """Rebuild the fine-tuned head in torch from :func:`save_head`'s file (no pickle)."""
    torch = base.torch
    head = _build_head(base, n_labels, 0.0)
    published = _base_tensors(base)
    state: dict[str, Any] = {}
    saved = saved_top_layers(path)
    if saved != base.top_layers:
        raise MpnetUnavailableError(
            f"{path.name} fine-tuned {saved} top layers, not {base.top_layers}"
        )
    with np.load(path, allow_pickle=False) as data:
        for name in head.state_dict():
            if f"{name}::q" in data:
                delta = data[f"{name}::q"].astype(np.float32) * data[f"{name}::scale"][:, None]
                value = published[name].detach().numpy().astype(np.float32) + delta
            elif name in data:
                value = np.asarray(data[name], dtype=np.float32)
            else:
                raise MpnetUnavailableError(f"{path.name} lacks the tensor {name}")
            state[name] = torch.from_numpy(np.ascontiguousarray(value))
    head.load_state_dict(state)
    head.eval()
    return head


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    label_names: Sequence[str],
    extra: Sequence[tuple[str, str, str]],
    seed: int = 0,
    cfg: MpnetConfig | None = None,
    top_layers: int = TOP_LAYERS,
) -> Array:
    """Out-of-fold probabilities, grouped by account (about 11 minutes a fold on 2 cores with the
    top three layers fine-tuned)."""
    from classifiers.evaluate import oof_proba

    cfg = cfg or MpnetConfig()
    base = _Base(cfg.threads, top_layers)
    every = list(dict.fromkeys([*texts, *(t for t, _, _ in extra)]))
    cache = dict(zip(every, base.states(every), strict=True))
    index = {lab: i for i, lab in enumerate(label_names)}

    def fit_predict(train_t: list[str], train_y: list[str], test_t: list[str]) -> Array:
        y = np.asarray([index[lab] for lab in train_y], dtype=np.int64)
        head = train_head(base, [cache[t] for t in train_t], y, len(label_names), cfg, seed)
        return head_proba(base, head, [cache[t] for t in test_t])

    return oof_proba(texts, labels, groups, fit_predict, seed, extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild the accurate part: optional grouped CV (OOF file), then a fit on everything."""
    import argparse

    from classifiers import train as tr
    from classifiers.model import LABELS
    from classifiers.persist import mpnet_path

    parser = argparse.ArgumentParser(description="Fine-tune mpnet's top layers (accurate part).")
    parser.add_argument("--cv-seeds", type=int, nargs="*", default=[], help="grouped-CV seeds")
    parser.add_argument("--skip-final", action="store_true", help="only the CV")
    parser.add_argument(
        "--top-layers",
        type=int,
        default=TOP_LAYERS,
        help=f"layers to fine-tune (default {TOP_LAYERS})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    brand = tr.load_scored()  # every scored post: the CV covers them all
    extra = [*tr.load_extra(), *tr.load_written()]
    texts, labels = [e.text for e in brand], [e.label for e in brand]
    rows = [(e.text, e.label, e.account) for e in extra]
    groups = [e.account for e in brand]
    oofs = [
        cross_validate(texts, labels, groups, LABELS, rows, seed, top_layers=args.top_layers)
        for seed in args.cv_seeds
    ]
    if oofs:
        tr.save_oof(tr.MPNET_OOF, args.cv_seeds, oofs, brand)
    if not args.skip_final:
        cfg = MpnetConfig()
        base = _Base(cfg.threads, args.top_layers)
        all_t = texts + [e.text for e in extra]
        index = {lab: i for i, lab in enumerate(LABELS)}
        y = np.asarray([index[e.label] for e in [*brand, *extra]], dtype=np.int64)
        head = train_head(base, base.states(all_t), y, len(LABELS), cfg, seed=0)
        save_head(base, head, mpnet_path(tr.DEFAULT_MODEL))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
