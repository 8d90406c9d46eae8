"""Training from labelled examples: data loading, grouped cross-validation, fitting, model card.

``python -m classifiers.train [--data extra.csv]`` retrains the shipped model from
``classifiers/data/`` (plus an optional CSV of ``text,label``) and rewrites ``MODEL_CARD.md``. The
fine-tuned MiniLM part is kept as shipped (re-fine-tuning needs torch: :mod:`research.finetune`);
its grouped-CV out-of-fold probabilities are shipped too, so the fused model is scored honestly.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from classifiers import evaluate as ev
from classifiers import generalise as gen
from classifiers.encoder import OnnxTextModel
from classifiers.model import LABELS, Classifier, LinearConfig, build_pipeline, fuse, fuse_all
from classifiers.persist import mpnet_path, onnx_paths, save, sha256_file, sha256_text

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
MODELS_DIR = PACKAGE_DIR / "models"
DEFAULT_MODEL = MODELS_DIR / "default.skops"
TRANSFORMER_OOF = MODELS_DIR / "transformer_oof.npz"
MPNET_OOF = MODELS_DIR / "mpnet_oof.npz"
MODEL_CARD = PACKAGE_DIR / "MODEL_CARD.md"
BRAND_FILE = "brand_posts_labeled.csv"
DIVERSE_FILE = "brand_posts_diverse.csv"
EXTRA_FILE = "labelled_extra.csv"
WRITTEN_FILE = "written_examples.csv"
WRITTEN = "__written__"
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    account: str
    source: str
    written: bool = False


@dataclass(frozen=True)
class TrainConfig:
    linear: LinearConfig = field(default_factory=LinearConfig)
    transformer_weight: float = 0.5
    # linear, MiniLM, mpnet: the accurate variant's fusion (equal, fixed before scoring)
    accurate_weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    use_extra: bool = True
    use_written: bool = True
    tune_bias: bool = False
    seeds: tuple[int, ...] = ev.CV_SEEDS


@dataclass
class TrainResult:
    classifier: Classifier
    metrics: dict[str, Any]
    mpnet_file: Path | None = None  # the accurate part's weights, shipped beside the model


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_label(label: str, where: str) -> str:
    if label not in LABELS:
        raise ValueError(f"{where}: unknown label {label!r}; expected one of {list(LABELS)}")
    return label


def load_brand_posts(data_dir: Path = DATA_DIR) -> list[Example]:
    """The real, doubly-annotated brand posts: the only posts ever scored."""
    rows = _read_csv(data_dir / BRAND_FILE)
    return [
        Example(r["text"], _check_label(r["label"], BRAND_FILE), r["account"], BRAND_FILE)
        for r in rows
    ]


def load_diverse(data_dir: Path = DATA_DIR) -> list[Example]:
    """Real, doubly-annotated posts of organisations of other kinds (shops, universities, grid
    operators; Instagram and X): scored, each source by its name (:data:`gen.SOURCE_NAMES`)."""
    path = data_dir / DIVERSE_FILE
    if not path.is_file():
        return []
    return [
        Example(
            r["text"],
            _check_label(r["label"], DIVERSE_FILE),
            f"{r['source_repo']}:{r['account']}",
            gen.SOURCE_NAMES.get(r["source_repo"], r["source_repo"]),
        )
        for r in _read_csv(path)
    ]


def load_scored(data_dir: Path = DATA_DIR) -> list[Example]:
    """Every real post that is scored: the Fortune-100 brand posts, then the diverse ones."""
    return [*load_brand_posts(data_dir), *load_diverse(data_dir)]


def load_extra(data_dir: Path = DATA_DIR) -> list[Example]:
    """Real posts from other shared sources, labelled for this project (training only)."""
    rows = _read_csv(data_dir / EXTRA_FILE)
    return [
        Example(r["text"], _check_label(r["label"], EXTRA_FILE), r["account"], r["source"])
        for r in rows
    ]


def load_written(data_dir: Path = DATA_DIR) -> list[Example]:
    """Posts written to fill gaps (replies, promo codes...): training only, never scored."""
    rows = _read_csv(data_dir / WRITTEN_FILE)
    return [
        Example(
            r["text"], _check_label(r["label"], WRITTEN_FILE), "__written__", WRITTEN_FILE, True
        )
        for r in rows
    ]


def load_user_csv(path: Path) -> list[Example]:
    """A user's CSV with columns ``text`` and ``label`` (others ignored): training only."""
    return [Example(t, label, "__user__", str(path)) for t, label in ev.read_labelled(path)]


def data_sha256(examples: Sequence[Example]) -> str:
    return sha256_text([f"{e.label}\t{e.account}\t{e.text}" for e in examples])


def _fit_predict(cfg: LinearConfig) -> ev.FitPredict:
    def fit_predict(train_t: list[str], train_y: list[str], test_t: list[str]) -> Array:
        model = build_pipeline(cfg).fit(train_t, train_y)
        return np.asarray(model.predict_proba(test_t))

    return fit_predict


def load_oof(path: Path, scored: Sequence[Example]) -> dict[int, Array]:
    """Out-of-fold probabilities by seed (MiniLM or mpnet), checked against the scored posts."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        if str(data["data_sha256"]) != data_sha256(scored):
            log.warning("%s does not match the scored posts; that part is not scored", path.name)
            return {}
        return {int(s): np.asarray(p) for s, p in zip(data["seeds"], data["proba"], strict=True)}


def unseen_sources(path: Path) -> list[str]:
    """The sources whose rows in the out-of-fold file at ``path`` come from a part that never
    trained on any post of theirs (so leave-one-source-out may use them)."""
    if not path.is_file():
        return []
    with np.load(path, allow_pickle=False) as data:
        return [str(s) for s in data["unseen_sources"]] if "unseen_sources" in data else []


def save_oof(
    path: Path,
    seeds: Sequence[int],
    oofs: Sequence[Array],
    scored: Sequence[Example],
    unseen: Sequence[str] = (),
) -> None:
    """Write out-of-fold probabilities by seed for :func:`load_oof` (and :func:`unseen_sources`)."""
    np.savez(
        path,
        seeds=np.asarray(seeds),
        proba=np.asarray(oofs, dtype=np.float32),
        data_sha256=np.asarray(data_sha256(scored)),
        unseen_sources=np.asarray(list(unseen), dtype=str),
    )


def _labels_idx(labels: Sequence[str]) -> Array:
    index = {lab: i for i, lab in enumerate(LABELS)}
    return np.asarray([index[lab] for lab in labels])


def _variant_scores(y: Array, groups: list[str], proba: Array, seed: int) -> dict[str, Any]:
    truth = [LABELS[i] for i in y]
    plain = [LABELS[i] for i in proba.argmax(axis=1)]
    tuned = [LABELS[i] for i in ev.nested_bias(proba, y, groups, seed)]
    return {"argmax": ev.report(truth, plain, LABELS), "tuned": ev.report(truth, tuned, LABELS)}


def cross_validate(
    brand: Sequence[Example],
    extra: Sequence[Example],
    config: TrainConfig,
    transformer_oof: dict[int, Array],
    mpnet_oof: dict[int, Array] | None = None,
) -> dict[str, Any]:
    """Grouped-by-account CV on the brand posts; extras only ever join training folds.

    The fine-tuned parts' out-of-fold probabilities (same folds, same seeds) are read from their
    files; the linear part is refitted here. ``accurate`` fuses all three parts.
    """
    texts = [e.text for e in brand]
    labels = [e.label for e in brand]
    groups = [e.account for e in brand]
    y = _labels_idx(labels)
    extra_rows = [(e.text, e.label, e.account) for e in extra]
    runs: dict[str, list[dict[str, Any]]] = {
        "linear": [],
        "transformer": [],
        "fused": [],
        "mpnet": [],
        "accurate": [],
    }
    fused_oof: dict[int, Array] = {}
    accurate_oof: dict[int, Array] = {}
    for seed in config.seeds:
        start = time.perf_counter()
        lin = ev.oof_proba(texts, labels, groups, _fit_predict(config.linear), seed, extra_rows)
        log.info("linear CV seed %d in %.0f s", seed, time.perf_counter() - start)
        runs["linear"].append(_variant_scores(y, groups, lin, seed))
        if seed in transformer_oof:
            neural = transformer_oof[seed]
            runs["transformer"].append(_variant_scores(y, groups, neural, seed))
            fused_oof[seed] = fuse(lin, neural, config.transformer_weight)
            runs["fused"].append(_variant_scores(y, groups, fused_oof[seed], seed))
            if mpnet_oof and seed in mpnet_oof:
                parts = [lin, neural, mpnet_oof[seed]]
                accurate = fuse_all(parts, config.accurate_weights)
                accurate_oof.setdefault(seed, accurate)
                runs["mpnet"].append(_variant_scores(y, groups, mpnet_oof[seed], seed))
                runs["accurate"].append(_variant_scores(y, groups, accurate, seed))
    summary = {name: _mean_reports(r) for name, r in runs.items() if r}
    headline = "fused" if fused_oof else "linear"
    head_oof = fused_oof[min(fused_oof)] if fused_oof else lin
    return {
        "variants": summary,
        "fused_oof": fused_oof,
        "headline": headline,
        "errors": worst_errors(brand, head_oof),
        "share": {"default": gen.share_errors(brand, head_oof)}
        | (
            {"accurate": gen.share_errors(brand, accurate_oof[min(accurate_oof)])}
            if accurate_oof
            else {}
        ),
    }


def leave_source_out(
    scored: Sequence[Example],
    training_only: Sequence[Example],
    config: TrainConfig,
    oofs: tuple[dict[int, Array], dict[int, Array]],
    unseen: Sequence[str],
) -> dict[str, Any]:
    """:func:`gen.leave_source_out` over the diverse sources for the default (linear + MiniLM)
    and, when its part was scored, the accurate variant (+ mpnet); the fine-tuned parts' rows
    from their first seed's out-of-fold file."""
    sources = list(dict.fromkeys(e.source for e in scored if e.source != BRAND_FILE))
    minilm, mpnet = (oof[min(oof)] if oof else None for oof in oofs)
    w = config.transformer_weight
    variants: dict[str, gen.Variant] = {"default": ([], [1.0])}
    if minilm is not None:
        variants["default"] = ([minilm], [1.0 - w, w])
        if mpnet is not None:
            variants["accurate"] = ([minilm, mpnet], list(config.accurate_weights))
    fit = _fit_predict(config.linear)
    return gen.leave_source_out(scored, training_only, fit, sources, variants, unseen)


ERROR_PAIRS = (
    ("sales-pitch", "inspiring"),
    ("inspiring", "sales-pitch"),
    ("engaging", "inspiring"),
    ("inspiring", "engaging"),
)


def worst_errors(brand: Sequence[Example], proba: Array, per_pair: int = 3) -> list[dict[str, Any]]:
    """The most confident out-of-fold mistakes for the main confusions (for the model card)."""
    pred = proba.argmax(axis=1)
    out = []
    for true, wrong in ERROR_PAIRS:
        w = LABELS.index(wrong)
        idx = [i for i, e in enumerate(brand) if e.label == true and pred[i] == w]
        idx.sort(key=lambda i: -float(proba[i, w]))
        out += [
            {
                "true": true,
                "predicted": wrong,
                "confidence": round(float(proba[i, w]), 2),
                "account": brand[i].account,
                "text": brand[i].text,
            }
            for i in idx[:per_pair]
        ]
    return out


def _mean_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("argmax", "tuned"):
        rs = [r[mode] for r in reports]
        first = rs[0]
        out[mode] = {
            "macro_f1": round(float(np.mean([r["macro_f1"] for r in rs])), 4),
            "accuracy": round(float(np.mean([r["accuracy"] for r in rs])), 4),
            "per_class": {
                lab: {
                    k: round(float(np.mean([r["per_class"][lab][k] for r in rs])), 4)
                    for k in ("precision", "recall", "f1")
                }
                | {"support": first["per_class"][lab]["support"]}
                for lab in LABELS
            },
            "confusion": {
                "labels": list(LABELS),
                "matrix": np.sum([r["confusion"]["matrix"] for r in rs], axis=0).tolist(),
            },
            "n": first["n"],
            "seeds": len(rs),
        }
    return out


def fit_final(
    examples: Sequence[Example],
    config: TrainConfig,
    transformer: OnnxTextModel | None,
    bias: Sequence[float] | None,
    version: str,
    with_accurate: bool = False,
) -> Classifier:
    """The linear part fitted on every example; fused with the shipped transformer (and, when
    asked for at load time, the accurate part with ``config.accurate_weights``)."""
    linear = build_pipeline(config.linear).fit(
        [e.text for e in examples], [e.label for e in examples]
    )
    return Classifier(
        linear=linear,
        labels=LABELS,
        transformer=transformer,
        transformer_weight=config.transformer_weight if transformer is not None else 0.0,
        class_bias=bias,
        version=version,
        accurate_weights=config.accurate_weights if with_accurate else (),
    )


def _final_bias(cv: dict[str, Any], brand: Sequence[Example], use_fused: bool) -> list[float]:
    oof: dict[int, Array] = cv["fused_oof"] if use_fused else {}
    if not oof:
        return [0.0] * len(LABELS)
    y = _labels_idx([e.label for e in brand])
    seed = min(oof)
    return [float(b) for b in ev.tune_bias(oof[seed], y)]


def train(
    config: TrainConfig | None = None,
    data_dir: Path = DATA_DIR,
    user_csv: Path | None = None,
    transformer: OnnxTextModel | None = None,
    transformer_oof_path: Path = TRANSFORMER_OOF,
    run_cv: bool = True,
    mpnet_oof_path: Path = MPNET_OOF,
    mpnet_file: Path | None = None,
    today: date | None = None,
) -> TrainResult:
    """Cross-validate, then fit the final model on everything. No database involved.

    ``mpnet_file``: the accurate part's weights (from ``python -m research.mpnet_train``) to ship
    beside the model; it needs the transformer. ``today`` dates the model's version (default:
    the machine's date; touchpoint passes its clock's).
    """
    cfg = config or TrainConfig()
    scored = load_scored(data_dir)
    extra = load_extra(data_dir) if cfg.use_extra else []
    written = load_written(data_dir) if cfg.use_written else []
    user = load_user_csv(user_csv) if user_csv else []
    training_only = [*extra, *written, *user]
    oof = load_oof(transformer_oof_path, scored) if transformer is not None else {}
    mpnet_oof = load_oof(mpnet_oof_path, scored) if transformer is not None else {}
    if run_cv:
        log.info(
            "cross-validating the linear part on %d scored posts (%d more join training folds "
            "only), grouped by account, seeds %s: about 25 s a seed",
            len(scored),
            len(training_only),
            list(cfg.seeds),
        )
    cv = (
        cross_validate(scored, training_only, cfg, oof, mpnet_oof)
        if run_cv
        else {"variants": {}, "fused_oof": {}}
    )
    unseen = unseen_sources(transformer_oof_path) if oof else []
    loso = leave_source_out(scored, training_only, cfg, (oof, mpnet_oof), unseen) if run_cv else {}
    use_fused = transformer is not None and bool(cv["fused_oof"])
    bias = _final_bias(cv, scored, use_fused) if cfg.tune_bias else None
    all_examples = [*scored, *training_only]
    version = model_version(all_examples, transformer, today or _machine_date())
    mpnet_file = mpnet_file if transformer is not None else None
    log.info("fitting the final model on %d posts", len(all_examples))
    clf = fit_final(all_examples, cfg, transformer, bias, version, mpnet_file is not None)
    metrics = {
        "cv": cv["variants"],
        "headline": {
            "variant": cv.get("headline", ""),
            "mode": "tuned" if cfg.tune_bias else "argmax",
        },
        "errors": cv.get("errors", []),
        "leave_source_out": loso,
        "share": cv.get("share", {}),
        "posts_per_second": measure_speed(clf, [e.text for e in scored]),
        "cv_protocol": f"StratifiedGroupKFold({ev.N_SPLITS}) by account, seeds {list(cfg.seeds)}",
        "counts": _counts(scored, extra, written, user),
        "scored_sources": list(dict.fromkeys(e.source for e in scored)),
        "config": {
            "transformer_weight": clf.transformer_weight,
            "accurate_weights": list(clf.accurate_weights),
            "class_bias": clf.class_bias,
            "linear": cfg.linear.__dict__,
        },
        "training_data_sha256": data_sha256(all_examples),
    }
    return TrainResult(clf, metrics, mpnet_file)


def _machine_date() -> date:
    return datetime.now(UTC).date()  # wall clock: classifiers sits below monitor and its clock


def model_version(
    examples: Sequence[Example], transformer: OnnxTextModel | None, today: date
) -> str:
    """``YYYYMMDD-<data hash>[-<transformer hash>]``: changes when the data or the MiniLM does."""
    version = f"{today:%Y%m%d}-{data_sha256(examples)[:8]}"
    if transformer is not None and transformer.model_path.is_file():
        version += f"-{sha256_file(transformer.model_path)[:8]}"
    return version


def measure_speed(clf: Classifier, texts: Sequence[str], batch_size: int = 1000) -> float:
    """Posts per second through ``predict`` (batches of ``batch_size``) on this machine."""
    log.info("measuring the model's speed on %d posts", len(texts))
    clf.predict(list(texts[:50]))
    start = time.perf_counter()
    clf.predict(list(texts), batch_size=batch_size)
    return round(len(texts) / (time.perf_counter() - start), 1)


def _counts(*parts: Sequence[Example]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for e in part:
            out.setdefault(e.source, {})
            out[e.source][e.label] = out[e.source].get(e.label, 0) + 1
    return out


def save_result(result: TrainResult, path: Path = DEFAULT_MODEL) -> Path:
    transformer = result.classifier.transformer
    files = (transformer.model_path, transformer.tokenizer_path) if transformer else None
    meta = {
        "training_data_sha256": result.metrics["training_data_sha256"],
        "metrics": result.metrics,
    }
    return save(result.classifier, path, meta, files, result.mpnet_file)


def shipped_transformer(path: Path = DEFAULT_MODEL) -> OnnxTextModel | None:
    onnx, tok = onnx_paths(path)
    return OnnxTextModel(onnx, tok) if onnx.is_file() and tok.is_file() else None


def shipped_mpnet(path: Path = DEFAULT_MODEL) -> Path | None:
    weights = mpnet_path(path)
    return weights if weights.is_file() else None


def label_counts(examples: Sequence[Example]) -> Counter[str]:
    return Counter(e.label for e in examples)


def main(argv: Sequence[str] | None = None, today: date | None = None) -> int:
    """Retrain from the command line; ``today`` dates the model's version (see :func:`train`)."""
    parser = argparse.ArgumentParser(description="Retrain the touchpoint post classifier.")
    parser.add_argument("--data", type=Path, help="extra CSV with columns text,label")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="model path (.skops)")
    parser.add_argument("--no-transformer", action="store_true", help="linear model only")
    parser.add_argument("--no-card", action="store_true", help="do not rewrite MODEL_CARD.md")
    parser.add_argument(
        "--cv-seeds",
        type=int,
        default=len(ev.CV_SEEDS),
        choices=range(1, len(ev.CV_SEEDS) + 1),
        help=f"cross-validation seeds (default {len(ev.CV_SEEDS)}; fewer is faster)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    transformer = None if args.no_transformer else shipped_transformer(DEFAULT_MODEL)
    if transformer is not None and args.out.resolve() != DEFAULT_MODEL.resolve():
        staged = onnx_paths(args.out)
        transformer = OnnxTextModel(transformer.model_path, transformer.tokenizer_path)
        log.info("the transformer files will be copied to %s", staged[0].parent)
    config = TrainConfig(seeds=ev.CV_SEEDS[: args.cv_seeds])
    if transformer is None:
        config = replace(config, transformer_weight=0.0)
    mpnet = None if args.no_transformer else shipped_mpnet(DEFAULT_MODEL)
    result = train(
        config, user_csv=args.data, transformer=transformer, mpnet_file=mpnet, today=today
    )
    path = save_result(result, args.out)
    if not args.no_card:
        from classifiers.card import write_card

        write_card(result, path, MODEL_CARD)
    log.info("model written to %s", path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
