"""MODEL_CARD.md, written by training from its metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifiers.model import LABELS
from classifiers.mpnet import TOP_LAYERS, saved_top_layers

if TYPE_CHECKING:
    from classifiers.train import TrainResult

log = logging.getLogger(__name__)

TARGET_MACRO = 0.80  # pooled grouped CV over every scored source
TARGET_SALES = 0.78
# leave-one-source-out macro-F1 targets by source name, and the mean share error's
TARGET_SOURCES = {
    "UK consumer brands, Instagram (2023-24)": 0.75,
    "Australian universities, X (2019-20)": 0.70,
}
TARGET_SHARE = 0.05
SMALL_CLASS = 30  # a class with fewer posts than this in a source makes a noisy F1
NOISE = 0.01  # differences under this are seed-to-seed noise (see the weaknesses below)
WEAKNESSES_FILE = Path(__file__).resolve().parent / "models" / "weaknesses.md"


LIMITS = [
    "- **Sales-pitch vs inspiring** is the main confusion: company news about its own products, "
    "deals, webinars, hiring or recognition (sales-pitch by the guideline) reads like "
    "informative or cause-related news (inspiring); similar posts carry either label.",
    "- **Engaging** is the smallest class (about a tenth of the scored posts) and often hinges "
    'on a closing question or an invitation ("Let\'s talk about it") inside an otherwise '
    "inspiring post.",
    "- **Organisations of other kinds** are where it is weakest (leave one source out, above): "
    "a university's course promotions, open days, rankings and campus investments (sales-pitch "
    "by the guideline) read as news, while its awards and graduations read as selling; a "
    "consumer brand's tips and stories sit between inspiring and selling. Their smaller classes "
    "(6 engaging and 20 sales-pitch posts of Australian universities) make those F1s noisy. "
    "Re-fine-tuning MiniLM with the other diverse sources (research, one seed) moved the "
    "Instagram source left out from 0.693 to 0.718 macro-F1: short of 0.75.",
    "- Scored data are broadcast posts: May–June 2020 tweets of Fortune-100 accounts (COVID-19 "
    "era), and 684 posts of 338 other organisations (UK consumer brands on Instagram, "
    "Australian, Swiss and US organisations on X, 2009–24). @-replies and customer care are "
    "learned from the twcs brand replies and written examples only and are not measured here; "
    "other languages are not measured. Non-English posts are rare and unreliable.",
    "- The fine-tuned MiniLM part never trained on the diverse sources: its probabilities for "
    "their posts are its plain predictions, out of sample for every one of them, fused with "
    "the linear part's out-of-fold ones. Re-fine-tuning it on them needs the grouped CV (and a "
    "fine-tune per source left out) redone in research, or these scores would flatter it.",
    "- The fine-tuned MiniLM part was cross-validated with fewer seeds than the linear part (see "
    "the seeds column; fine-tuning five folds takes 45–65 minutes on 2 cores). Seed to seed and "
    "fold to fold the spread is large (sales-pitch F1 of the default 0.737 and 0.705 for seeds 0 "
    "and 1, of the accurate variant 0.762 and 0.741; macro-F1 about 0.66–0.83 per fold): "
    f"differences under about {NOISE} are noise.",
    "- The accurate variant's mpnet part was scored by fold models kept in float32; the shipped "
    "part stores each fine-tuned matrix as an int8 difference from the published weights (a "
    "rounding of at most half a step per row, far below the fine-tuning change itself). Its "
    "out-of-fold probabilities come from `python -m research.mpnet_train --cv-seeds 0 1`, the "
    "module that trained the shipped part.",
    "- The MiniLM part uses int8 dynamic quantisation: probabilities can move by about 0.01 with "
    "the batch a post is in. Its out-of-fold probabilities come from fold models quantised per "
    "channel, as the shipped model is (until 2026-11-24 seed 0's came from fold models quantised "
    "per tensor: default 0.764 / sales-pitch 0.714 then, 0.771 / 0.721 now).",
]

_MODES = {"argmax": "most probable label", "tuned": "per-class thresholds tuned in nested CV"}


def _per_class_table(rep: dict[str, Any]) -> list[str]:
    lines = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for lab in LABELS:
        pc = rep["per_class"][lab]
        lines.append(
            f"| {lab} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | "
            f"{pc['support']} |"
        )
    return lines


def _confusion(rep: dict[str, Any]) -> list[str]:
    labs = rep["confusion"]["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labs) + " |", "|---" * (len(labs) + 1) + "|"]
    for lab, row in zip(labs, rep["confusion"]["matrix"], strict=True):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _variants(cv: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | thresholds | macro-F1 | engaging F1 | inspiring F1 | sales-pitch F1 | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, modes in cv.items():
        for mode, rep in modes.items():
            f = {lab: rep["per_class"][lab]["f1"] for lab in LABELS}
            lines.append(
                f"| {name} | {mode} | {rep['macro_f1']:.3f} | {f['engaging']:.3f} | "
                f"{f['inspiring']:.3f} | {f['sales-pitch']:.3f} | {rep['seeds']} |"
            )
    return lines


def _headline(m: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    head = m.get("headline", {})
    name, mode = head.get("variant", ""), head.get("mode", "argmax")
    if name in m["cv"]:
        return name, mode, m["cv"][name][mode]
    return "", mode, None


def _errors(errors: list[dict[str, Any]]) -> list[str]:
    lines = ["Most confident out-of-fold mistakes of the headline variant (seed 0):", ""]
    for e in errors:
        text = " ".join(e["text"].split())[:200].replace("|", "/")
        lines.append(
            f"- true **{e['true']}**, predicted {e['predicted']} ({e['confidence']:.2f}, "
            f"{e['account']}): {text}"
        )
    return lines


def _verdict(rep: dict[str, Any]) -> str:
    macro = rep["macro_f1"]
    sales = rep["per_class"]["sales-pitch"]["f1"]
    ok = macro >= TARGET_MACRO and sales >= TARGET_SALES
    status = "reached" if ok else "NOT reached"
    margin = min(macro - TARGET_MACRO, sales - TARGET_SALES)
    caveat = (
        f"; by {margin:.3f}, less than the spread between seeds noted under Known weaknesses"
        if ok and margin < NOISE
        else ""
    )
    return (
        f"Targets (macro-F1 ≥ {TARGET_MACRO}, sales-pitch F1 ≥ {TARGET_SALES}): **{status}** "
        f"(macro-F1 {macro:.3f}, sales-pitch F1 {sales:.3f}{caveat})."
    )


def _scores(rep: dict[str, Any]) -> list[str]:
    return [
        _verdict(rep),
        "",
        *_per_class_table(rep),
        "",
        "Confusion matrix (summed over seeds):",
        "",
        *_confusion(rep),
        "",
    ]


_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _accurate(cv: dict[str, Any], mode: str, mpnet_file: Path | None) -> list[str]:
    if "accurate" not in cv:
        return []
    layers = saved_top_layers(mpnet_file) if mpnet_file else TOP_LAYERS
    return [
        "## The accurate variant (optional, `load_default(accurate=True)`)",
        "",
        "The linear part, the fine-tuned MiniLM and all-mpnet-base-v2 with its top "
        f"{_NUMBERS.get(layers, str(layers))} layers "
        "fine-tuned (`classifiers.mpnet`), averaged with equal weights (fixed before scoring). "
        "Runs in numpy (no torch) and needs the mpnet weight packages and safetensors (the "
        "`accurate` extra); far slower than the "
        "default (see the README's performance table). Out-of-fold scores over "
        f"{cv['accurate'][mode]['seeds']} fine-tuning seed(s) of the mpnet part, each fused with "
        "the same seed's linear and MiniLM parts.",
        "",
        *_scores(cv["accurate"][mode]),
    ]


def _leave_source_out(loso: dict[str, dict[str, Any]]) -> list[str]:
    if not any(loso.values()):
        return []
    lines = [
        "## Organisations of kinds it never trained on (leave one source out)",
        "",
        "Trained on every other source (and the training-only sets), scored on one whole source: "
        "how it does on brands of a kind, platform and period it has not seen. The fine-tuned "
        "parts count only where they never saw the source (else the linear part alone).",
        "",
        "| source left out | variant | parts | macro-F1 | target | engaging F1 (n) | "
        "inspiring F1 (n) | sales-pitch F1 (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    noisy = False
    for variant, by_source in loso.items():
        for source, rep in by_source.items():
            noisy = noisy or min(rep["per_class"][lab]["support"] for lab in LABELS) < SMALL_CLASS
            lines.append(_loso_row(variant, source, rep))
    if noisy:
        lines += [
            "",
            f"A class with fewer than {SMALL_CLASS} posts in a source makes a noisy F1: one post "
            "more or less right moves it by several points.",
        ]
    return [*lines, ""]


def _loso_row(variant: str, source: str, rep: dict[str, Any]) -> str:
    target = TARGET_SOURCES.get(source)
    met = "met" if target is not None and rep["macro_f1"] >= target else "**not met**"
    verdict = "–" if target is None else f"{target} {met}"
    cells = [
        f"{rep['per_class'][lab]['f1']:.3f} ({rep['per_class'][lab]['support']})" for lab in LABELS
    ]
    return (
        f"| {source} | {variant} | {rep['parts']} | {rep['macro_f1']:.3f} | {verdict} | "
        + " | ".join(cells)
        + " |"
    )


def _share(share: dict[str, dict[str, Any]]) -> list[str]:
    if not share:
        return []
    first = next(iter(share.values()))
    lines = [
        "## Each account's sales-pitch share",
        "",
        "The self-promotion alert and the digest judge an account by its share of sales-pitch "
        f"posts. For each of the {first['accounts']} accounts with at least "
        f"{first['min_posts']} scored posts, |predicted share − true share|, out of fold (first "
        f"seed); target: a mean of at most {TARGET_SHARE}.",
        "",
        "| variant | estimate | mean error | target | worst account | its error |",
        "|---|---|---|---|---|---|",
    ]
    names = {"count": "count of most probable labels (used)", "probability": "mean probability"}
    for variant, by in share.items():
        for name, est in by.get("estimates", {}).items():
            met = "met" if est["mean"] <= TARGET_SHARE else "**not met**"
            lines.append(
                f"| {variant} | {names.get(name, name)} | {est['mean']:.3f} | {met} | "
                f"{est['worst_account']} | {est['worst']:.3f} |"
            )
    return [*lines, ""]


def _counts(counts: dict[str, dict[str, int]], scored_sources: list[str]) -> list[str]:
    lines = [
        "| source | engaging | inspiring | sales-pitch | total | scored |",
        "|---|---|---|---|---|---|",
    ]
    for source, by in counts.items():
        total = sum(by.values())
        scored = "yes" if source in scored_sources else "no (training only)"
        cells = " | ".join(str(by.get(lab, 0)) for lab in LABELS)
        lines.append(f"| {source} | {cells} | {total} | {scored} |")
    return lines


def render(result: TrainResult, model_path: Path) -> str:
    m = result.metrics
    cv = m["cv"]
    name, mode, head = _headline(m)
    clf = result.classifier
    out = [
        "# Model card: touchpoint post classifier",
        "",
        "Written by `python -m classifiers.train`; do not edit by hand.",
        "",
        f"- model version: `{clf.version}`, file `{model_path.name}`",
        "- parts: linear model over word/char n-grams and guideline cues"
        + (
            f", fused with a fine-tuned MiniLM (ONNX, weight {clf.transformer_weight})"
            if clf.transformer is not None
            else " only"
        ),
        f"- per-class log-probability offsets: {[round(b, 2) for b in clf.class_bias]}",
        f"- training-data sha256: `{m['training_data_sha256']}`",
        f"- evaluation: {m['cv_protocol']}; real posts only (every scored source pooled), every "
        "score is for accounts the fold never trained on; extra and written examples only join "
        "training folds (never with an account of the test fold). Then each diverse source "
        "left out whole, and each account's sales-pitch share.",
        "",
        "## Data",
        "",
        *_counts(m["counts"], m.get("scored_sources", ["brand_posts_labeled.csv"])),
        "",
    ]
    if head is not None:
        out += [
            f"## Grouped-CV scores (headline: {name}, {_MODES[mode]})",
            "",
            *_scores(head),
            *_accurate(cv, mode, result.mpnet_file),
            *_leave_source_out(m.get("leave_source_out", {})),
            *_share(m.get("share", {})),
            "## All variants",
            "",
            *_variants(cv),
            "",
            f"Throughput of `predict` (batches of 1,000) when trained: "
            f"{m.get('posts_per_second', 0):.0f} posts/s on this machine.",
            "",
            "## Known weaknesses",
            "",
            *LIMITS,
            "",
            *_errors(m.get("errors", [])),
            "",
        ]
    if WEAKNESSES_FILE.is_file():
        out += [WEAKNESSES_FILE.read_text("utf-8").rstrip(), ""]
    return "\n".join(out)


def write_card(result: TrainResult, model_path: Path, card_path: Path) -> Path:
    card_path.write_text(render(result, model_path), "utf-8")
    log.info("model card written to %s", card_path)
    return card_path
