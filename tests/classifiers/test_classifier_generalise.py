"""Leave-one-source-out and the share error: what the card reports on unseen kinds of brand."""

from __future__ import annotations

import numpy as np

from classifiers import generalise as gen
from classifiers.model import LABELS
from classifiers.train import Example, load_diverse

Array = np.ndarray


def posts(source: str, n: int, label: str = "inspiring", account: str = "a") -> list[Example]:
    return [Example(f"{source} {i}", label, f"{source}:{account}", source) for i in range(n)]


def test_a_source_left_out_never_trains_and_its_parts_count_only_when_unseen() -> None:
    scored = [*posts("corp", 150), *posts("shop", 120, "sales-pitch"), *posts("uni", 40)]
    extra = posts("extra", 5)
    trained_on: list[list[str]] = []

    def fit_predict(texts: list[str], labels: list[str], test: list[str]) -> Array:
        trained_on.append(texts)
        return np.tile([0.1, 0.8, 0.1], (len(test), 1))  # always "inspiring"

    sure_sales = np.tile([0.0, 0.0, 1.0], (len(scored), 1))
    variants: dict[str, gen.Variant] = {"alone": ([], [1.0]), "fused": ([sure_sales], [0.5, 0.5])}
    report = gen.leave_source_out(
        scored, extra, fit_predict, ["shop", "uni"], variants, unseen=["shop"]
    )
    assert len(trained_on) == 1  # one fit for the source, shared by the variants
    assert list(report["fused"]) == ["shop"]  # "uni" has fewer than LOSO_MIN_POSTS posts
    assert not any(t.startswith("shop") for t in trained_on[0])  # held out whole
    assert "extra 0" in trained_on[0] and "corp 0" in trained_on[0] and "uni 0" in trained_on[0]
    fused = report["fused"]["shop"]
    assert fused["parts"] == "all"  # the part never saw the shop: fused, and all right
    assert fused["per_class"]["sales-pitch"]["f1"] == 1.0
    assert report["alone"]["shop"]["per_class"]["sales-pitch"]["f1"] == 0.0
    seen = gen.leave_source_out(scored, extra, fit_predict, ["shop"], variants)
    assert seen["fused"]["shop"]["parts"] == "linear only"  # a part that may have seen it: out
    assert seen["fused"]["shop"]["per_class"]["sales-pitch"]["f1"] == 0.0


def test_share_error_per_account_by_count_and_by_probability() -> None:
    scored = [
        *posts("shop", 6, "sales-pitch", "one"),
        *posts("shop", 4, "inspiring", "one"),
        *posts("shop", 3, "inspiring", "small"),  # under SHARE_MIN_POSTS: not judged
    ]
    sales, inspiring = LABELS.index("sales-pitch"), LABELS.index("inspiring")
    proba = np.zeros((len(scored), 3))
    proba[:8, sales] = 0.6  # 8 of 10 called sales-pitch where 6 are: count error 0.2
    proba[:8, inspiring] = 0.4
    proba[8:, inspiring] = 1.0
    result = gen.share_errors(scored, proba)
    assert result["accounts"] == 1
    count, probability = result["estimates"]["count"], result["estimates"]["probability"]
    assert abs(count["mean"] - 0.2) < 1e-9 and count["worst_account"] == "shop:one"
    assert abs(probability["mean"] - abs(0.48 - 0.6)) < 1e-9


def test_the_diverse_posts_are_scored_under_their_source_names() -> None:
    diverse = load_diverse()
    assert len(diverse) == 684
    assert {e.source for e in diverse} == set(gen.SOURCE_NAMES.values())
    assert all(":" in e.account for e in diverse)  # accounts kept apart from the corporate ones
