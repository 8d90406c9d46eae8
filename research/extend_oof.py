"""Extend the shipped parts' out-of-fold files to the diverse posts (run once after they joined).

The MiniLM and mpnet parts shipped were fine-tuned on the Fortune-100 posts and the training-only
sets, never on ``brand_posts_diverse.csv``: their plain predictions on those posts are out of
sample for each of them, for the pooled grouped CV and for leave-one-source-out alike. This
appends them (the same for every seed) to ``transformer_oof.npz`` and ``mpnet_oof.npz`` and
names the diverse sources as unseen. After re-fine-tuning a part on the diverse posts, do not
run this: redo that part's grouped CV over every scored post instead.

Usage: python -m research.extend_oof   (needs the accurate extra for the mpnet part)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

import classifiers
from classifiers import train as tr

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


def extend(path: Path, predictions: Array, corporate: list[tr.Example]) -> None:
    with np.load(path, allow_pickle=False) as data:
        if str(data["data_sha256"]) != tr.data_sha256(corporate):
            raise SystemExit(f"{path.name} is not the Fortune-100 posts' file: nothing done")
        seeds, proba = list(data["seeds"]), np.asarray(data["proba"])
    diverse = tr.load_diverse()
    pooled = [np.vstack([p, predictions]) for p in proba]
    unseen = sorted({e.source for e in diverse})
    tr.save_oof(path, [int(s) for s in seeds], pooled, [*corporate, *diverse], unseen)
    log.info("%s: %d seeds, %d rows, unseen %s", path.name, len(seeds), len(pooled[0]), unseen)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corporate = tr.load_brand_posts()
    texts = [e.text for e in tr.load_diverse()]
    model = classifiers.load_default(accurate=True)
    assert model.transformer is not None and model.accurate is not None
    started = time.perf_counter()
    extend(tr.TRANSFORMER_OOF, np.asarray(model.transformer.predict_proba(texts)), corporate)
    extend(tr.MPNET_OOF, np.asarray(model.accurate.predict_proba(texts)), corporate)
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
