"""What every platform sandbox reads requests with: parameters, search queries and the account
catalogue.

Each piece is written once here; a platform states only where it differs (its query operators,
its parameter checks), so that a new platform's sandbox is its wire format and little else.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from monitor.sandbox.server import Query
from monitor.sandbox.traffic import TrafficItem


def require(name: str, value: str, pattern: str) -> None:
    """ValueError naming argument ``name`` unless ``value`` matches ``pattern`` whole."""
    if not re.fullmatch(pattern, value):
        raise ValueError(f"{name} must match {pattern}: {value!r}")


# --------------------------------------------------------------------------- parameters


class Params:
    """The query string of one request; platforms add the checks their API makes."""

    def __init__(self, query: Query) -> None:
        self._query = query

    def get(self, name: str) -> str | None:
        """The last value of ``name``, or None."""
        values = self._query.get(name)
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` as sent (the key repeated)."""
        return list(self._query.get(name, []))


# --------------------------------------------------------------------------- search queries


@dataclass(frozen=True)
class SearchTerms:
    """A search query taken apart: plain terms, negated terms and the values of operators
    (``name:value``), all lower-cased and unquoted, in the order written."""

    terms: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    operators: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def operator(self, name: str) -> tuple[str, ...]:
        """The values given to operator ``name``."""
        return self.operators.get(name, ())


@dataclass(frozen=True)
class QuerySyntax:
    """One tokenizer for every platform's search language; a platform states its differences.

    Tokens are words and quoted phrases (a sign in ``signs`` before a phrase belongs to it).
    ``parens`` strips grouping parentheses; ``skip`` are words (``OR``, ``AND``) dropped as they
    are; ``ignored`` are operator prefixes dropped (``is:``); ``operators`` are the operator
    names kept (value unquoted, a leading ``@`` dropped); ``other`` says what an unknown
    ``name:value`` is: ``"term"`` (the whole token), ``"value"`` (the value alone) or ``"drop"``.
    """

    operators: frozenset[str] = frozenset()
    signs: str = "-"
    parens: bool = True
    skip: frozenset[str] = frozenset({"OR", "AND"})
    ignored: tuple[str, ...] = ()
    other: Literal["term", "value", "drop"] = "term"

    def tokens(self, query: str) -> list[str]:
        """The query's tokens, parentheses stripped when ``parens``."""
        found = re.findall(rf'[{re.escape(self.signs)}]?"[^"]*"|\S+', query)
        return [t.strip("()") for t in found] if self.parens else found

    def parse(self, query: str) -> SearchTerms:
        """The terms, negated terms and operator values of ``query``."""
        terms: list[str] = []
        excluded: list[str] = []
        operators: dict[str, list[str]] = {name: [] for name in self.operators}
        for token in self.tokens(query):
            if not token or token in self.skip or token.lower().startswith(self.ignored):
                continue
            target = terms
            if token[0] in self.signs:
                target = excluded if token[0] == "-" else terms
                token = token[1:]
            name, sep, value = token.partition(":")
            if sep and value and name.lower() in operators and target is terms:
                operators[name.lower()].append(value.strip('"').lstrip("@").lower())
            elif sep and self.other != "term":
                if self.other == "value":
                    target.append((value or token).strip('"').lower())
            elif term := token.strip('"').strip().lower():
                target.append(term)
        kept = {name: tuple(values) for name, values in operators.items()}
        return SearchTerms(tuple(terms), tuple(excluded), kept)


# --------------------------------------------------------------------------- catalogue


def hashed_id(handle: str, reserved: str) -> str:
    """A stable 18-digit account id for ``handle``, never ``reserved`` (the brand's)."""
    digest = hashlib.sha256(handle.lower().encode()).digest()
    number = 10**17 + int.from_bytes(digest[:8], "big") % (9 * 10**17)
    return str(number + 1 if str(number) == reserved else number)


class Catalog:
    """The items a sandbox serves, and the handles it knows (the brand, every author, everyone
    mentioned) with their ids.

    ``mention`` finds the handles a text mentions (group 1); ``extra`` are further accounts.
    The brand's id is ``brand_id``; the others are :func:`hashed_id`.
    """

    def __init__(
        self,
        items: Sequence[TrafficItem],
        brand_handle: str,
        brand_id: str,
        mention: re.Pattern[str],
        extra: Collection[str] = (),
    ) -> None:
        self.items = list(items)
        self.by_seq = {item.seq: item for item in self.items}
        self.brand_handle = brand_handle
        self.brand_id = brand_id
        handles = {h.lower(): h for h in (brand_handle, *extra)}
        for item in items:
            handles.setdefault(item.author_handle.lower(), item.author_handle)
            for match in mention.finditer(item.text):
                handles.setdefault(match.group(1).lower(), match.group(1))
        self.handles = handles
        self._by_id = {self.id(h): h for h in handles.values()}

    def id(self, handle: str) -> str:
        """The account id of ``handle``."""
        if handle.lower() == self.brand_handle.lower():
            return self.brand_id
        return hashed_id(handle, self.brand_id)

    def handle(self, name: str) -> str | None:
        """The handle as written of a known account (any case), or None."""
        return self.handles.get(name.lower())

    def handle_for_id(self, account_id: str) -> str | None:
        """The handle of the account with ``account_id``, or None."""
        return self._by_id.get(account_id)

    def parent(self, item: TrafficItem) -> TrafficItem | None:
        """The item ``item`` replies to, if any."""
        return None if item.in_reply_to_seq is None else self.by_seq.get(item.in_reply_to_seq)
