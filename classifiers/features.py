"""Text cleaning, features from the labelling guideline, and the vectorizer configuration.

Everything here is deterministic and stateless apart from the fitted TF-IDF vocabularies, so a
model saved with :mod:`classifiers.persist` only refers to names defined in this module.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline

URL_RE = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
MENTION_RE = re.compile(r"@\w+")
HASHTAG_RE = re.compile(r"#\w+")
SPACE_RE = re.compile(r"\s+")
EMOJI_RE = re.compile(
    "[\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f000-\U0001f2ff\U00002b00-\U00002bff]"
)

URL_TOKEN = "URL"
CHAR_HASH_FEATURES = 2**17


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns), re.IGNORECASE)


# Each guideline cue is a named regular expression; the feature is how often it fires.
GUIDELINE_CUES: dict[str, re.Pattern[str]] = {
    "cta_buy": _rx(
        r"\b(buy|order|shop|purchase|pre-?order|add to cart|get yours|grab yours|save \$?\d*)\b",
        r"\bavailable (now|today|at|in)\b",
        r"\blink in (bio|profile)\b",
        r"\b(free shipping|in stores?|on sale|deals?|offers?|discounts?|savings?)\b",
    ),
    "cta_signup": _rx(
        r"\b(sign up|signup|register|download|subscribe|apply now|book now|rsvp|enroll|try it)\b",
        r"\b(get started|start (your|a) free|learn how (you|your))\b",
    ),
    "cta_watch": _rx(r"\b(tune in|watch|join us|live stream|livestream|stream)\b"),
    "learn_more": _rx(r"\b(learn more|read more|find out|see how|discover|explore)\b"),
    "price": _rx(r"[$€£]\s?\d", r"\b\d+(\.\d+)?\s?(usd|dollars|cents)\b", r"\bfree\b"),
    "percent": _rx(r"\d+(\.\d+)?\s?%", r"\bpercent\b"),
    "promo_code": _rx(r"\b(promo|coupon|voucher|use code|code [A-Z0-9]{3,})\b"),
    "our_new": _rx(
        r"\b(our|the) (all-)?new\b",
        r"\bintroduc(e|es|ing)\b",
        r"\b(launch(es|ed|ing)?|unveil(s|ed|ing)?|now available|coming soon|just released)\b",
        r"\bnew (feature|product|app|service|line|model|update|version)s?\b",
    ),
    "product": _rx(
        r"\b(app|device|laptop|phone|platform|solution|software|cloud|service|product|plan)s?\b",
        r"\b(customers?|clients?|businesses|enterprise|partners?)\b",
    ),
    "company_results": _rx(
        r"\b(earnings|quarter(ly)?|q[1-4]|fy\d{2,4}|dividend|investors?|shareholders?|revenue)\b",
        r"\b(results|press release|announce[sd]?|announcing|stock|nyse|nasdaq|guidance)\b",
        r"\$[A-Z]{1,5}\b",
    ),
    "award": _rx(
        r"\b(award(s|ed)?|ranked|ranking|named (to|one of|a)|recogni[sz]ed|honou?red to|winner)\b",
        r"\b(proud to (announce|be)|excited to (announce|share)|#1|top \d+|best (place|company))\b",
    ),
    "event": _rx(
        r"\b(webinar|keynote|summit|conference|booth|expo|virtual event|session|panel|demo)s?\b",
        r"\b(today at|tomorrow at|kicks? off|countdown|register)\b",
    ),
    "engage_ask": _rx(
        r"\b(tell us|share (your|with us|a photo|how)|tag (a|your|us)|let us know|reply|comment)\b",
        r"\b(vote|poll|caption|which (one|do you|is your))\b",
        r"\b(what('?s| is| are) your|who('?s| is) your)\b",
        r"\b(how (are|do|will) you|what (do|would|will) you|show us|drop (a|an|your))\b",
        r"\b(q&a|ask (us|me)|chat|a\d\b|q\d\b)",
    ),
    "care": _rx(
        r"\b(dm|direct message|sorry to hear|we're here to help|reach out|please (follow|send))\b",
        r"\b(happy to help|let's take a look|we apologi[sz]e|sorry for)\b",
    ),
    "thanks": _rx(r"\b(thanks?|thank you|grateful|gratitude|appreciate)\b"),
    "cause": _rx(
        r"\b(donat\w*|volunteer\w*|communit\w*|divers\w*|inclus\w*|sustainab\w*|equality)\b",
        r"\b(frontline|heroes|health ?care workers|relief|support(ing|s)?|solidarity|racism)\b",
        r"\b(employees?|team members?|our people|colleagues|nurses|families|students)\b",
        r"\b(stay (safe|home|healthy)|covid|pandemic|crisis|mental health|wellbeing)\b",
    ),
    "celebrate": _rx(
        r"\b(congrat\w*|happy \w+ ?day|celebrat\w*|honor\w*|remember\w*|graduat\w*)\b"
    ),
    "tips": _rx(r"\b(tips?|how to|ways to|steps|guide|insights?|research|study|report)\b"),
    "playful": _rx(r"\b(lol|haha|omg|vibes|mood|when you|that feeling|friday|monday|weekend)\b"),
    "first_person": _rx(r"\b(we|we're|we've|we'll|our|ours|us)\b"),
    "second_person": _rx(r"\b(you|your|you're|yours|you've|you'll)\b"),
}

SHAPE_FEATURES: tuple[str, ...] = (
    "question_marks",
    "ends_question",
    "exclamations",
    "starts_mention",
    "mentions",
    "hashtags",
    "links",
    "emoji",
    "digits",
    "log_words",
    "caps_ratio",
)

FEATURE_NAMES: tuple[str, ...] = tuple(GUIDELINE_CUES) + SHAPE_FEATURES


def clean_text(text: str) -> str:
    """Unescape HTML entities, replace links with a placeholder, collapse white space."""
    text = html.unescape(text)
    text = URL_RE.sub(f" {URL_TOKEN} ", text)
    return SPACE_RE.sub(" ", text).strip()


def _shape(raw: str, text: str) -> list[float]:
    words = text.split()
    letters = [c for c in text if c.isalpha()]
    caps = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
    stripped = URL_RE.sub("", raw).strip()
    return [
        float(text.count("?")),
        float(stripped.endswith("?")),
        float(text.count("!")),
        float(raw.lstrip().startswith("@")),
        float(len(MENTION_RE.findall(text))),
        float(len(HASHTAG_RE.findall(text))),
        float(len(URL_RE.findall(raw))),
        float(len(EMOJI_RE.findall(text))),
        float(sum(c.isdigit() for c in text)),
        math.log1p(len(words)),
        caps,
    ]


def guideline_vector(raw: str) -> list[float]:
    """The guideline cues and shape features of one post, log-scaled counts."""
    text = clean_text(raw)
    cues = [float(len(rx.findall(text))) for rx in GUIDELINE_CUES.values()]
    return [math.log1p(v) for v in cues + _shape(raw, text)]


def guideline_matrix(texts: Iterable[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Stack :func:`guideline_vector` for many posts into a dense matrix."""
    rows = [guideline_vector(t) for t in texts]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


class GuidelineFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Stateless transformer: guideline cues scaled by ``weight``, returned sparse."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def fit(self, texts: Sequence[str], y: object = None) -> GuidelineFeatures:
        self.n_features_out_ = len(FEATURE_NAMES)
        return self

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return sparse.csr_matrix(guideline_matrix(texts) * self.weight)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray[Any, Any]:
        return np.asarray([f"guide__{n}" for n in FEATURE_NAMES], dtype=object)


def char_vectorizer(n_features: int = CHAR_HASH_FEATURES) -> Pipeline:
    """Hashed character 2-5-grams (no stored vocabulary: small file, fast load), TF-IDF weighted."""
    return Pipeline(
        [
            (
                "hash",
                HashingVectorizer(
                    preprocessor=clean_text,
                    analyzer="char_wb",
                    ngram_range=(2, 5),
                    n_features=n_features,
                    alternate_sign=False,
                    norm=None,
                    dtype=np.float32,
                ),
            ),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
        ]
    )


def build_vectorizer(guideline_weight: float = 0.5, char: bool = True) -> FeatureUnion:
    """Word 1-2-grams, character 2-5-grams and guideline cues, each L2-normalised TF-IDF."""
    parts: list[tuple[str, Any]] = [
        (
            "word",
            TfidfVectorizer(
                preprocessor=clean_text,
                lowercase=True,
                ngram_range=(1, 2),
                min_df=2,
                sublinear_tf=True,
                token_pattern=r"(?u)[#@]?\b\w+\b|[?!]",
            ),
        ),
    ]
    if char:
        parts.append(("char", char_vectorizer()))
    if guideline_weight > 0:
        parts.append(("guide", GuidelineFeatures(weight=guideline_weight)))
    return FeatureUnion(parts)
