"""``--where``: a filter over the catalog's columns, parsed by hand into a pyarrow.compute
expression (never evaluated as Python).

The language (keywords in any case)::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | comparison
    comparison := operand OP operand          OP: = == != <> < <= > >=
                | column ["not"] "in" "(" literal ("," literal)* ")"
                | column "is" ["not"] "null"
    operand    := column | literal
    literal    := 'text' | "text" | number | true | false | null

A column is a name of the catalog (``session``, ``status``, ``n_frames``, ``blank_frames``,
``sha256_frames``, ``converted_at``...); a literal compared with a column is cast to the
column's type (``converted_at < '2026-01-01'``). Examples: ``blank_frames = n_frames``,
``session in ('a', 'b')``, ``n_frames < 100 and not source = 'x'``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from reacture_convert.errors import ConfigError

__all__ = ["filter_table", "parse_where"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<op><=|>=|<>|!=|==|=|<|>)
      | (?P<punct>[(),])
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_COMPARE = {
    "=": pc.equal,
    "==": pc.equal,
    "!=": pc.not_equal,
    "<>": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


@dataclass(frozen=True)
class _Tok:
    kind: str  # string, number, op, punct, name, keyword, end
    text: str
    at: int


def _tokens(text: str) -> list[_Tok]:
    found: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _error(text, pos, "unexpected character")
        kind = m.lastgroup or ""
        value = m.group(kind)
        at = m.start(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        found.append(_Tok(kind, value, at))
        pos = m.end()
    found.append(_Tok("end", "", len(text)))
    return found


def _error(text: str, at: int, what: str) -> ConfigError:
    return ConfigError(
        f'--where {text!r}: {what} at character {at + 1}; write e.g. "blank_frames = '
        "n_frames\", \"session in ('a', 'b')\" or \"n_frames < 100 and status = 'converted'\""
    )


@dataclass(frozen=True)
class _Value:
    """An operand: a column (``column`` set) or a literal (``value``)."""

    column: str | None = None
    value: Any = None


class _Parser:
    def __init__(self, text: str, schema: pa.Schema) -> None:
        self.text, self.schema = text, schema
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str, text: str | None = None) -> _Tok | None:
        t = self.tok
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, text: str, what: str) -> None:
        if self.take(kind, text) is None:
            raise _error(self.text, self.tok.at, f"expected {what}")

    def parse(self) -> pc.Expression:
        expr = self.expr()
        if self.tok.kind != "end":
            raise _error(self.text, self.tok.at, f"unexpected {self.tok.text!r}")
        return expr

    def expr(self) -> pc.Expression:
        left = self.term()
        while self.take("keyword", "or"):
            left = left | self.term()
        return left

    def term(self) -> pc.Expression:
        left = self.factor()
        while self.take("keyword", "and"):
            left = left & self.factor()
        return left

    def factor(self) -> pc.Expression:
        if self.take("keyword", "not"):
            return ~self.factor()
        if self.take("punct", "("):
            inner = self.expr()
            self.expect("punct", ")", "')'")
            return inner
        return self.comparison()

    def column(self, tok: _Tok) -> str:
        if tok.text not in self.schema.names:
            raise _error(
                self.text,
                tok.at,
                f"no column {tok.text!r} (columns: {', '.join(self.schema.names)})",
            )
        return tok.text

    def operand(self) -> _Value:
        t = self.tok
        self.i += 1
        if t.kind == "name":
            return _Value(column=self.column(t))
        if t.kind == "string":
            quote = t.text[0]
            return _Value(value=t.text[1:-1].replace(quote * 2, quote))
        if t.kind == "number":
            number = float(t.text) if any(c in t.text for c in ".eE") else int(t.text)
            return _Value(value=number)
        if t.kind == "keyword" and t.text in ("true", "false", "null"):
            return _Value(value={"true": True, "false": False, "null": None}[t.text])
        raise _error(self.text, t.at, f"expected a column or a value, not {t.text or 'the end'!r}")

    def literal(self, column: str, value: _Value, at: int) -> Any:
        if value.column is not None:
            raise _error(self.text, at, "expected a value here, not a column")
        target = self.schema.field(column).type
        raw = value.value
        try:
            if pa.types.is_timestamp(target) and isinstance(raw, str):
                when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
                raw = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
            return pa.scalar(raw).cast(target)
        except (ValueError, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise _error(
                self.text, at, f"{value.value!r} cannot be compared with {column} ({target}): {e}"
            ) from None

    def side(self, v: _Value, other: _Value, at: int) -> Any:
        if v.column is not None:
            return pc.field(v.column)
        assert other.column is not None  # (comparison checks that one side is a column)
        return pc.scalar(self.literal(other.column, v, at))

    def comparison(self) -> pc.Expression:
        start = self.tok
        left = self.operand()
        if left.column is not None and self.take("keyword", "is"):
            negate = self.take("keyword", "not") is not None
            self.expect("keyword", "null", "null after 'is'")
            test = pc.field(left.column).is_null()
            return ~test if negate else test
        negate = left.column is not None and self.take("keyword", "not") is not None
        if left.column is not None and self.take("keyword", "in"):
            return self.membership(left.column, negate)
        if negate:
            raise _error(self.text, self.tok.at, "expected 'in' after 'not'")
        op = self.take("op")
        if op is None:
            raise _error(self.text, self.tok.at, "expected a comparison (=, !=, <, <=, >, >=)")
        at = self.tok.at
        right = self.operand()
        if left.column is None and right.column is None:
            raise _error(self.text, start.at, "a comparison needs a column on one side")
        compare = _COMPARE[op.text]
        result: pc.Expression = compare(
            self.side(left, right, start.at), self.side(right, left, at)
        )
        return result

    def membership(self, column: str, negate: bool) -> pc.Expression:
        self.expect("punct", "(", "'(' after 'in'")
        values: list[Any] = []
        if not self.take("punct", ")"):
            while True:
                at = self.tok.at
                values.append(self.literal(column, self.operand(), at).as_py())
                if self.take("punct", ")"):
                    break
                self.expect("punct", ",", "',' or ')'")
        target = self.schema.field(column).type
        test = pc.field(column).isin(pa.array(values, type=target))
        return ~test if negate else test


def parse_where(text: str, schema: pa.Schema) -> pc.Expression:
    """The expression ``text`` says over a table of ``schema`` (see the module doc);
    ``ConfigError`` naming the place and what was expected."""
    if not text.strip():
        raise _error(text, 0, "an empty filter")
    return _Parser(text, schema).parse()


def filter_table(table: pa.Table, text: str) -> pa.Table:
    """The rows of ``table`` for which ``text`` holds (null counts as false)."""
    expr = parse_where(text, table.schema)
    try:
        return table.filter(expr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ConfigError(f"--where {text!r}: cannot be evaluated over the catalog: {e}") from None
