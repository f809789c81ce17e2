"""The literal a .npy header is written in, parsed by a tiny strict grammar (no ``eval``).

It knows only dicts, lists, tuples, quoted strings, integers and booleans (both Python's
``True``/``False`` and the game exporter's JavaScript ``true``/``false``), bounded in depth.
Numbers are kept as written and checked where a number is expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "Bool",
    "HeaderSyntaxError",
    "INT",
    "MAX_DIM_DIGITS",
    "Number",
    "Parser",
    "Value",
    "describe",
]

MAX_DEPTH = 16  # nesting of the header literal; a structured descr needs about 4


class HeaderSyntaxError(Exception):
    """The header text is not a literal this parser accepts; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    javascript: bool  # written as true/false


@dataclass(frozen=True, slots=True)
class Number:
    text: str  # kept as written; checked where a number is expected


Value: TypeAlias = dict[str, "Value"] | list["Value"] | tuple["Value", ...] | str | Bool | Number

_WORDS = {
    "True": Bool(True, False),
    "False": Bool(False, False),
    "true": Bool(True, True),
    "false": Bool(False, True),
}
_NUMBER = re.compile(r"[-+]?[0-9.][0-9A-Za-z_.]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INT = re.compile(r"0|[1-9][0-9]*")
MAX_DIM_DIGITS = 19


class Parser:
    """Recursive descent over the header text. Whitespace between tokens is spaces and tabs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> HeaderSyntaxError:
        near = self.text[self.pos : self.pos + 20]
        return HeaderSyntaxError(f"{what} at character {self.pos + 1} (near {near!r})")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def parse_document(self) -> Value:
        value = self.value(0)
        if self.peek() != "":
            raise self.fail("unexpected text after the header dict")
        return value

    def value(self, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise self.fail("header nests too deeply")
        char = self.peek()
        if char == "{":
            return self.dict_(depth)
        if char in "[(":
            return self.sequence(depth, char)
        if char in "'\"":
            return self.string()
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            return Number(number.group())
        name = _NAME.match(self.text, self.pos)
        if name and name.group() in _WORDS:
            self.pos = name.end()
            return _WORDS[name.group()]
        if name:
            raise self.fail(f"{name.group()!r} is not allowed (only literals)")
        raise self.fail("expected a value" if char else "header ends where a value is expected")

    def string(self) -> str:
        quote = self.text[self.pos]
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self.fail("unterminated string")
        content = self.text[self.pos + 1 : end]
        if "\\" in content or "\n" in content:
            raise self.fail("escape sequences and newlines are not allowed in strings")
        self.pos = end + 1
        return content

    def dict_(self, depth: int) -> dict[str, Value]:
        self.expect("{")
        out: dict[str, Value] = {}
        while self.peek() != "}":
            if self.peek() not in ("'", '"'):
                raise self.fail("expected a quoted key or '}'")
            key = self.string()
            if key in out:
                raise self.fail(f"duplicate key {key!r}")
            self.expect(":")
            out[key] = self.value(depth + 1)
            if self.peek() != "}":
                self.expect(",")
        self.pos += 1
        return out

    def sequence(self, depth: int, opener: str) -> list[Value] | tuple[Value, ...]:
        closer = "]" if opener == "[" else ")"
        self.expect(opener)
        items: list[Value] = []
        trailing_comma = False
        while self.peek() != closer:
            items.append(self.value(depth + 1))
            trailing_comma = False
            if self.peek() != closer:
                self.expect(",")
                trailing_comma = True
        self.pos += 1
        if opener == "[":
            return items
        if len(items) == 1 and not trailing_comma:
            raise self.fail("a parenthesised value without a comma is not a tuple")
        return tuple(items)


def describe(value: Value) -> str:
    """A short human rendering of a parsed value, for messages."""
    if isinstance(value, Number):
        return value.text
    if isinstance(value, Bool):
        return str(value.value)
    if isinstance(value, dict):
        return "a dict"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, tuple):
        return "a tuple"
    return repr(value)
