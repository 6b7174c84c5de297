"""The run filter language, after MLflow's `search_runs`, parsed into a small structure.

    params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95
    max(metrics.center_accuracy) > 0.9 and status IN ('finished', 'lost')
    tags.team LIKE 'vision%' and workers >= 2 and (source = 'ui')

Identifiers: `params.<dotted key>`, `metrics.<key>` (the latest value), `min(metrics.<key>)`,
`max(metrics.<key>)`, `tags.<key>`, and the attributes in `ATTRIBUTES`. A key may be quoted, as
MLflow writes it: params."optimizer.algorithm", params.'my-key' or params.`my-key`. MLflow's
other spellings are read too: `param`/`parameter(s)`, `metric`, `tag`, `attribute(s)`/`attr`/`run`
prefixes, `run_name` and `created` for `name` and `start_time`, and status in any case. Values are
quoted strings or numbers. Clauses are joined with `and` and may be grouped in parentheses. The
SQL is built from this structure with bound parameters only: no text of the filter ever becomes
SQL. Length, nesting and the number of comparisons are bounded, so that no filter can exhaust
the parser's stack or the database's expression limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from db.errors import EasgdError

ATTRIBUTES = {
    "status": "str",
    "source": "str",
    "name": "str",
    "run_id": "str",
    "start_time": "num",
    "end_time": "num",
    "duration": "num",
    "workers": "num",
    "hosts": "num",
    "last_step": "num",
    "job_id": "num",
}
# MLflow's names for attributes, as its users type them.
ATTRIBUTE_ALIASES = {
    "run_name": "name",
    "run name": "name",
    "created": "start_time",
}
PREFIXES = {
    "params": "param",
    "param": "param",
    "parameters": "param",
    "parameter": "param",
    "metrics": "metric",
    "metric": "metric",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
MAX_LENGTH = 10_000
MAX_DEPTH = 32
MAX_COMPARISONS = 100
MAX_ORDERINGS = 10
_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")


class FilterError(EasgdError, ValueError):
    """A malformed filter: says where, what was expected and what was found."""

    http_status = 422

    def __init__(self, message: str, text: str, position: int):
        self.position = position
        pointer = f"\n  {text}\n  {' ' * position}^" if text else ""
        super().__init__(f"{message} (at position {position}){pointer}")
        self.short = f"{message} (at position {position})"

    def cli_message(self) -> str:
        return f"invalid filter: {self}"


@dataclass(frozen=True)
class Field:
    kind: Literal["param", "metric", "tag", "attribute"]
    key: str
    aggregate: Literal["latest", "min", "max"] = "latest"

    def __str__(self) -> str:
        if self.kind == "attribute":
            return self.key
        prefix = {"param": "params", "metric": "metrics", "tag": "tags"}[self.kind]
        name = f"{prefix}.{self.key}"
        return f"{self.aggregate}({name})" if self.aggregate != "latest" else name


_STATUS = Field("attribute", "status")


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str
    value: str | float | tuple[str | float, ...]


@dataclass(frozen=True)
class OrderBy:
    field: Field
    descending: bool


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, op, lparen, rparen, comma, backtick, end
    text: str
    pos: int
    value: object = None


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_]))
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-/]*)
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            buf = []
            while True:
                if j >= len(text):
                    raise FilterError(f"unterminated string starting with {ch}", text, i)
                if text[j] == ch:
                    if j + 1 < len(text) and text[j + 1] == ch:  # '' escapes a quote
                        buf.append(ch)
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            tokens.append(Token("string", text[i : j + 1], i, "".join(buf)))
            i = j + 1
            continue
        if ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise FilterError("unterminated backtick-quoted key", text, i)
            tokens.append(Token("backtick", text[i : j + 1], i, text[i + 1 : j]))
            i = j + 1
            continue
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            what = "';' (one filter, no statements)" if ch == ";" else repr(ch)
            raise FilterError(f"unexpected character {what}", text, i)
        kind = m.lastgroup
        if kind != "ws":
            if kind == "number":
                tokens.append(Token("number", m.group(), i, float(m.group())))
            else:
                tokens.append(Token(kind, m.group(), i))
        i = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        if len(text) > MAX_LENGTH:
            raise FilterError(
                f"filter longer than {MAX_LENGTH} characters (received: {len(text)} characters); "
                "shorten it",
                "",
                MAX_LENGTH,
            )
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _fail(self, expected: str) -> FilterError:
        t = self.tok
        found = "the end of the filter" if t.kind == "end" else repr(t.text)
        return FilterError(f"expected {expected}, found {found}", self.text, t.pos)

    def _take(self, kind: str, expected: str) -> Token:
        if self.tok.kind != kind:
            raise self._fail(expected)
        t = self.tok
        self.i += 1
        return t

    def _word(self, word: str) -> bool:
        t = self.tok
        return t.kind == "ident" and t.text.lower() == word

    def parse_filter(self) -> list[Comparison]:
        if self.tok.kind == "end":
            return []
        out = self._conjunction()
        if self.tok.kind == "rparen":
            raise FilterError("unbalanced ')': no '(' opens it", self.text, self.tok.pos)
        if self.tok.kind != "end":
            if self._word("or"):
                raise FilterError(
                    "'or' is not supported; join clauses with 'and'", self.text, self.tok.pos
                )
            raise self._fail("'and' or the end of the filter")
        return out

    def _conjunction(self) -> list[Comparison]:
        out = self._clause()
        while self._word("and"):
            self.i += 1
            out += self._clause()
        return out

    def _clause(self) -> list[Comparison]:
        if self.tok.kind == "lparen":
            opening = self.tok
            if self.depth == MAX_DEPTH:
                raise FilterError(
                    f"parentheses nested deeper than {MAX_DEPTH} levels; remove some",
                    self.text,
                    opening.pos,
                )
            self.i += 1
            self.depth += 1
            inner = self._conjunction()
            self.depth -= 1
            if self.tok.kind != "rparen":
                if self.tok.kind == "end":
                    raise FilterError("unbalanced '(': no ')' closes it", self.text, opening.pos)
                raise self._fail("'and' or ')'")
            self.i += 1
            return inner
        if self.comparisons == MAX_COMPARISONS:
            raise FilterError(
                f"more than {MAX_COMPARISONS} comparisons; narrow the filter",
                self.text,
                self.tok.pos,
            )
        self.comparisons += 1
        return [self._comparison()]

    def field(self) -> Field:
        t = self.tok
        if (
            t.kind == "ident"
            and t.text.lower() in ("min", "max")
            and self.tokens[self.i + 1].kind == "lparen"
        ):
            agg = t.text.lower()
            self.i += 2
            f = self.field()
            if f.kind != "metric" or f.aggregate != "latest":
                raise FilterError(
                    f"{agg}() takes a metric, such as {agg}(metrics.center_accuracy)",
                    self.text,
                    t.pos,
                )
            self._take("rparen", "')'")
            return Field("metric", f.key, agg)  # type: ignore[arg-type]
        if t.kind != "ident":
            raise self._fail("a field (params.KEY, metrics.KEY, tags.KEY or an attribute)")
        self.i += 1
        head, _, rest = t.text.partition(".")
        kind = PREFIXES.get(head.lower())
        if kind is None:
            return self._attribute(t.text, t.pos)
        key = rest
        if not key and self.tok.kind in ("backtick", "string"):
            key = self.tok.value  # params.`key`, params."key" or params.'key'
            self.i += 1
        if not key:
            raise FilterError(f"{head} needs a key, such as {head}.NAME", self.text, t.pos)
        if kind == "attribute":
            return self._attribute(key, t.pos)
        if not _KEY.fullmatch(key):
            raise FilterError(f"invalid key {key!r}", self.text, t.pos)
        return Field(kind, key)  # type: ignore[arg-type]

    def _attribute(self, name: str, pos: int) -> Field:
        key = ATTRIBUTE_ALIASES.get(name.lower(), name.lower())
        if key not in ATTRIBUTES:
            raise FilterError(
                f"unknown field {name!r}; use params.KEY, metrics.KEY, tags.KEY or one of: "
                + ", ".join(sorted(ATTRIBUTES)),
                self.text,
                pos,
            )
        return Field("attribute", key)

    def _value(self, f: Field) -> str | float:
        t = self.tok
        if t.kind in ("string", "number"):
            self.i += 1
            if f == _STATUS and t.kind == "string":
                return t.value.lower()  # type: ignore[union-attr]  # MLflow writes 'FINISHED'
            return t.value  # type: ignore[return-value]
        raise self._fail("a value: a quoted string or a number")

    def _comparison(self) -> Comparison:
        f = self.field()
        t = self.tok
        if t.kind == "op":
            op = "!=" if t.text == "<>" else t.text
            self.i += 1
        elif self._word("like") or self._word("ilike"):
            op = t.text.upper()
            self.i += 1
        elif self._word("in"):
            op = "IN"
            self.i += 1
        elif (
            self._word("not")
            and self.tokens[self.i + 1].kind == "ident"
            and self.tokens[self.i + 1].text.lower() == "in"
        ):
            op = "NOT IN"
            self.i += 2
        else:
            raise self._fail("a comparison operator (=, !=, <, <=, >, >=, LIKE, IN)")
        if op in ("IN", "NOT IN"):
            self._take("lparen", "'(' and a list of values")
            values = [self._value(f)]
            while self.tok.kind == "comma":
                self.i += 1
                values.append(self._value(f))
            self._take("rparen", "',' or ')' closing the list")
            value: str | float | tuple = tuple(values)
        else:
            value_tok = self.tok
            value = self._value(f)
            if op in ("LIKE", "ILIKE") and not isinstance(value, str):
                raise FilterError(f"{op} needs a quoted pattern", self.text, value_tok.pos)
        return Comparison(f, op, value)

    def parse_order(self) -> list[OrderBy]:
        out = []
        while True:
            f = self.field()
            desc = False
            if self._word("desc") or self._word("asc"):
                desc = self.tok.text.lower() == "desc"
                self.i += 1
            out.append(OrderBy(f, desc))
            if self.tok.kind == "comma":
                self.i += 1
                continue
            if self.tok.kind != "end":
                raise self._fail("ASC, DESC, ',' or the end of the ordering")
            return out


def parse_filter(text: str | None) -> list[Comparison]:
    """Parse a filter into comparisons joined by 'and'; raises FilterError."""
    return _Parser(text or "").parse_filter()


def parse_order_by(items: list[str] | str | None) -> list[OrderBy]:
    if not items:
        return []
    if isinstance(items, str):
        items = [items]
    out: list[OrderBy] = []
    for item in items:
        if item.strip():  # an empty ordering orders nothing, as an empty filter filters nothing
            out += _Parser(item).parse_order()
    if len(out) > MAX_ORDERINGS:
        raise FilterError(f"at most {MAX_ORDERINGS} orderings (received: {len(out)})", "", 0)
    return out
