"""How the classifier does on organisations of kinds it never trained on.

Grouped CV within one source (Fortune-100 tweets of 2020) cannot show how touchpoint does on a
shop's Instagram or a university's tweets. Two measures can:

- **leave one source out**: train on every other source, score one, for each diverse source with
  at least :data:`LOSO_MIN_POSTS` posts;
- **the share error**: what the self-promotion alert and the digest use is an account's share of
  sales-pitch posts, so for each account with at least :data:`SHARE_MIN_POSTS` scored posts,
  |predicted share - true share|, estimated two ways (the count of most probable labels, and the
  mean sales-pitch probability).

The MiniLM part's probabilities for the diverse posts come with the out-of-fold file
(``unseen_sources``: sources the part that gave them never trained on); for a source not listed,
leave-one-source-out scores the linear part alone, never a part that saw the source.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from classifiers import evaluate as ev
from classifiers.model import LABELS, fuse_all

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
LOSO_MIN_POSTS = 100
SHARE_MIN_POSTS = 10
SALES = LABELS.index("sales-pitch")
# each source of brand_posts_diverse.csv by its repository, as the card names it
SOURCE_NAMES = {
    "orientearlgrey/eyestagram": "UK consumer brands, Instagram (2023-24)",
    "R-ou-Python/aus-uni-twitter-sentiment": "Australian universities, X (2019-20)",
    "tonyelhabr/tetweets": "US grid operators, X (2011-18)",
    "mischahaenen/SBD3": "Swiss universities, X (2009-23)",
}


class Scored(Protocol):
    """A real labelled post (:class:`classifiers.train.Example`)."""

    @property
    def text(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def source(self) -> str: ...


FitPredict = Callable[[list[str], list[str], list[str]], Array]


# a variant's fine-tuned parts (their rows of the scored posts) and the fusion weights, linear first
Variant = tuple[Sequence[Array], Sequence[float]]


def leave_source_out(
    scored: Sequence[Scored],
    training_only: Sequence[Scored],
    fit_predict: FitPredict,
    sources: Sequence[str],
    variants: dict[str, Variant],
    unseen: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """For each of ``sources`` with enough posts: the linear part trained once on every other
    post (``training_only`` included) and scored on that source's posts, for each of
    ``variants`` averaged with its fine-tuned parts when the source is in ``unseen``, else the
    linear part alone. Reports by variant, then source name."""
    out: dict[str, dict[str, Any]] = {name: {} for name in variants}
    for source in sources:
        test = [i for i, e in enumerate(scored) if e.source == source]
        if len(test) < LOSO_MIN_POSTS:
            continue
        held = set(test)
        train = [e for i, e in enumerate(scored) if i not in held] + list(training_only)
        linear = fit_predict(
            [e.text for e in train], [e.label for e in train], _texts(scored, test)
        )
        truth = [scored[i].label for i in test]
        for name, (parts, weights) in variants.items():
            fused = bool(parts) and source in unseen
            proba = fuse_all([linear, *(p[test] for p in parts)], weights) if fused else linear
            predicted = [LABELS[int(k)] for k in proba.argmax(axis=1)]
            used = {"parts": "all" if fused else "linear only"}
            out[name][source] = ev.report(truth, predicted, LABELS) | used
            log.info("left out %s (%s): macro-F1 %.3f", source, name, out[name][source]["macro_f1"])
    return out


def _texts(examples: Sequence[Scored], rows: Sequence[int]) -> list[str]:
    return [examples[i].text for i in rows]


def share_errors(scored: Sequence[Scored], proba: Array) -> dict[str, Any]:
    """|predicted - true| sales-pitch share for each account with :data:`SHARE_MIN_POSTS` or more
    posts, from out-of-fold ``proba``: by the count of most probable labels and by the mean
    probability; the mean and the worst account of each."""
    rows: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(scored):
        rows[e.account].append(i)
    truth = np.asarray([e.label == "sales-pitch" for e in scored])
    counted = proba.argmax(axis=1) == SALES
    errors: dict[str, dict[str, float]] = {"count": {}, "probability": {}}
    for account, idx in rows.items():
        if len(idx) < SHARE_MIN_POSTS:
            continue
        true = float(truth[idx].mean())
        errors["count"][account] = abs(float(counted[idx].mean()) - true)
        errors["probability"][account] = abs(float(proba[idx, SALES].mean()) - true)
    return {
        "accounts": len(errors["count"]),
        "min_posts": SHARE_MIN_POSTS,
        "estimates": {name: _summary(by) for name, by in errors.items() if by},
    }


def _summary(errors: dict[str, float]) -> dict[str, Any]:
    worst = max(errors, key=lambda a: errors[a])
    return {
        "mean": round(float(np.mean(list(errors.values()))), 4),
        "worst": round(errors[worst], 4),
        "worst_account": worst,
    }
