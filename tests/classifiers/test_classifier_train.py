"""Training from a small data directory: CV over real posts only, user CSV, save and reload."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from classifiers.card import render
from classifiers.evaluate import read_labelled
from classifiers.model import LABELS, LinearConfig
from classifiers.persist import load
from classifiers.train import (
    BRAND_FILE,
    DATA_DIR,
    EXTRA_FILE,
    WRITTEN_FILE,
    TrainConfig,
    load_user_csv,
    save_result,
    train,
)


def _copy_subset(src: Path, dst: Path, keep: int) -> None:
    with src.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    subset = [r for lab in LABELS for r in by_label.get(lab, [])[:keep]]
    with dst.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(subset)


@pytest.fixture()
def small_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    _copy_subset(DATA_DIR / BRAND_FILE, data / BRAND_FILE, 60)
    _copy_subset(DATA_DIR / EXTRA_FILE, data / EXTRA_FILE, 10)
    _copy_subset(DATA_DIR / WRITTEN_FILE, data / WRITTEN_FILE, 5)
    return data


def test_train_scores_real_posts_only_and_round_trips(small_data: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine.csv"
    user.write_text("text,label,extra\nBuy two get one free!,sales-pitch,x\n", "utf-8")
    cfg = TrainConfig(LinearConfig(char_ngrams=False), transformer_weight=0.0, seeds=(0,))
    result = train(cfg, data_dir=small_data, user_csv=user)
    linear = result.metrics["cv"]["linear"]["argmax"]
    assert linear["n"] == 180  # 60 brand posts per label; extra, written and user rows not scored
    assert set(linear["per_class"]) == set(LABELS)
    assert result.metrics["counts"][str(user)] == {"sales-pitch": 1}
    path = save_result(result, tmp_path / "m.skops")
    again = load(path)
    assert again.predict_labels(["Buy two get one free!"])[0] in LABELS
    assert "Grouped-CV scores" in render(result, path)


def test_user_csv_needs_text_and_label(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("body,category\nhello,engaging\n", "utf-8")
    with pytest.raises(ValueError, match="text"):
        load_user_csv(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\nhello,engaging\nworld,spam\n", "utf-8")
    with pytest.raises(ValueError, match="line 3: 'spam' is not a label"):
        load_user_csv(wrong)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("caf\u00e9,engaging\n".encode("latin-1"), "is not UTF-8 text"),
        ("text,label\n".encode("utf-16"), "is not UTF-8 text"),
        (b"text,label\nhello\n", "line 2: '' is not a label"),
        (b"text,label\n", "no labelled posts in it"),
        (b"", "its first line has: nothing"),
    ],
    ids=["latin-1", "utf-16", "no-label", "header-only", "empty"],
)
def test_read_labelled_refuses_what_it_cannot_use_in_one_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "mine.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_labelled(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "Fix: " in message and "\n" not in message


def test_read_labelled_takes_excel_csv_with_its_bom_and_loose_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = 'id, Text ,LABEL\r\n1,"Shop now, 20% off",sales-pitch \r\n2,,engaging\r\n'
    path.write_bytes(text.encode("utf-8-sig"))  # what Excel's "CSV UTF-8" writes
    assert read_labelled(path) == [("Shop now, 20% off", "sales-pitch")]  # no text: skipped


def test_card_names_how_many_mpnet_layers_the_shipped_part_fine_tuned(tmp_path: Path) -> None:
    import json

    import numpy as np

    from classifiers import DEFAULT_MODEL_PATH
    from classifiers.card import _accurate
    from classifiers.persist import mpnet_path, sidecar_path

    cv = json.loads(sidecar_path(DEFAULT_MODEL_PATH).read_text("utf-8"))["metrics"]["cv"]
    shipped = "\n".join(_accurate(cv, "argmax", mpnet_path(DEFAULT_MODEL_PATH)))
    assert "layers fine-tuned" in shipped and "Targets" in shipped
    three = tmp_path / "three.mpnet.npz"
    np.savez(three, top_layers=np.asarray(3))
    assert "top three layers" in "\n".join(_accurate(cv, "argmax", three))
    two = tmp_path / "two.mpnet.npz"
    np.savez(two, other=np.zeros(1))  # written before the count was saved: two layers
    assert "top two layers" in "\n".join(_accurate(cv, "argmax", two))
    assert _accurate({"linear": cv["linear"]}, "argmax", three) == []  # no accurate scores


def test_card_says_when_a_target_is_reached_by_less_than_the_seed_spread() -> None:
    from classifiers.card import _verdict

    def rep(macro: float, sales: float) -> dict[str, object]:
        return {"macro_f1": macro, "per_class": {"sales-pitch": {"f1": sales}}}

    close = _verdict(rep(0.804, 0.781))  # the targets: macro-F1 0.80, sales-pitch F1 0.78
    assert "**reached**" in close and "by 0.001, less than the spread" in close
    assert "spread" not in _verdict(rep(0.83, 0.81))  # a clear margin: no caveat
    short = _verdict(rep(0.771, 0.721))
    assert "**NOT reached**" in short and "spread" not in short
