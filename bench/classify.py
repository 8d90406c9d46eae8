"""Classify speed: touchpoint's classify path against a bare predict of the same model.

touchpoint's path reads the unlabelled brand posts from a real store in batches, predicts and
writes the labels back (``pipeline.classify_pending``); the baseline is the model's own
``predict_proba`` on the same texts, in batches of the same size, in this one process.

Usage: python bench/classify.py [--posts 2000] [--batch 1000] [--rounds 3] [--accurate]
Targets: touchpoint's path at least 0.8 of the bare rate, and at least 200 posts/s (the default
model; ``--accurate`` measures the optional mpnet variant the same way, with no speed target).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from sqlite_utils import Database

import classifiers
from monitor import pipeline, store
from monitor.models import Post


def corpus(n: int) -> list[str]:
    """n real brand posts (the shipped labelled corpus, repeated as needed)."""
    path = files("classifiers") / "data" / "brand_posts_labeled.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    return [texts[i % len(texts)] for i in range(n)]


def seeded_store(path: Path, texts: list[str]) -> Database:
    db = store.open_db(path)
    posts = [
        Post(
            platform="x",
            native_id=str(i),
            brand="acme",
            author_id="1",
            author_handle="acme",
            is_brand=True,
            kind="post",
            text=text,
            url="",
            created_at="2026-11-20T10:00:00Z",
        )
        for i, text in enumerate(texts)
    ]
    store.upsert_posts(db, posts)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--accurate", action="store_true", help="the optional mpnet variant")
    args = parser.parse_args()
    model = classifiers.load_default(accurate=args.accurate)
    texts = corpus(args.posts)
    model.predict(texts[:50])  # warm up the ONNX session (and load the mpnet weights)
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            started = time.perf_counter()
            model.predict_proba(texts, batch_size=args.batch)
            bare.append(time.perf_counter() - started)
            db = seeded_store(Path(tmp) / f"bench{i}.db", texts)
            started = time.perf_counter()
            done = pipeline.classify_pending(db, model, batch_size=args.batch)
            ours.append(time.perf_counter() - started)
            assert done == len(texts)
            db.conn.close()
    ours_rate = args.posts / statistics.median(ours)
    bare_rate = args.posts / statistics.median(bare)
    ratio = statistics.median(b / o for o, b in zip(ours, bare, strict=True))
    variant = "accurate (mpnet)" if args.accurate else "default"
    print(f"model: {variant}; {args.posts} posts, batch {args.batch}, median of {args.rounds}")
    print(f"touchpoint classify path: {ours_rate:,.0f} posts/s")
    print(f"bare predict_proba:       {bare_rate:,.0f} posts/s")
    target = "no speed target: opt-in" if args.accurate else "target >= 0.80; and >= 200 posts/s"
    print(f"ratio path/bare:          {ratio:.2f} ({target})")


if __name__ == "__main__":
    main()
