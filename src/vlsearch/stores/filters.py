"""The ``where`` filter language: vlsearch's own small grammar, checked, then rendered for each store.

A filter is never handed to a store as the user wrote it. It is parsed into the grammar below,
its columns and literal types are checked, and it is rendered anew as LanceDB SQL or as a
Milvus boolean expression. Function calls, arithmetic, casts, sub-queries and statements are
not part of the grammar: they are refused, naming the token.

    filter     := or
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | "(" or ")" | predicate
    predicate  := column ( op literal
                         | [NOT] IN "(" literal ("," literal)* ")"
                         | [NOT] LIKE 'pattern'
                         | [NOT] BETWEEN literal AND literal
                         | IS [NOT] NULL )
    op         := = | == | != | <> | < | <= | > | >=
    column     := id | source | content_hash | modality | text | metadata | page | chunk | start | end
                  (bare, "quoted" or `quoted`)
    literal    := 'string' ('' for a quote) | number

Example:
    >>> f = parse("modality = 'pdf_page' AND page <= 3")
    >>> f.sql(), f.milvus()
    ("modality = 'pdf_page' AND page <= 3", 'modality == "pdf_page" and page <= 3')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

from ..errors import InputError

MAX_LENGTH = 4000  # characters of one filter
MAX_DEPTH = 32  # nesting of parentheses and NOT
MAX_VALUES = 1000  # literals in one IN list
COLUMNS = {"id": str, "source": str, "content_hash": str, "modality": str, "text": str, "metadata": str,
           "page": int, "chunk": int, "start": float, "end": float}
_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*|"[^"]*"|`[^`]*`)
  | (?P<op><=|>=|<>|!=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<minus>-)
  | (?P<other>\S)
  )""", re.VERBOSE)
_ARITHMETIC = {"+", "-", "*", "/", "%", "|", "&", "^", "~"}
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "BETWEEN", "IS", "NULL"}

Literal = Union[str, int, float]


# ---------------------------------------------------------------- the tree

@dataclass(frozen=True)
class Compare:
    column: str
    op: str  # =, !=, <, <=, >, >=
    value: Literal


@dataclass(frozen=True)
class In:
    column: str
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    column: str
    pattern: str
    negated: bool


@dataclass(frozen=True)
class Between:
    column: str
    low: Literal
    high: Literal
    negated: bool


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Junction:
    kind: str  # AND, OR
    operands: tuple[Node, ...]


Node = Union[Compare, In, Like, Between, IsNull, Not, Junction]


@dataclass(frozen=True)
class Filter:
    """A parsed filter; ``sql()`` for LanceDB, ``milvus()`` for Milvus."""

    root: Node

    def sql(self) -> str:
        return _outer(_sql(self.root), self.root)

    def milvus(self) -> str:
        return _outer(_milvus(self.root), self.root)


def _outer(text: str, root: Node) -> str:
    """The top level needs no parentheses of its own."""
    return text[1:-1] if isinstance(root, Junction) else text


def parse(where: str, capped: bool = True) -> Filter:
    """Parse and check a filter; ``InputError`` naming the offending token otherwise.

    ``capped`` applies the caps meant for filters from users (``MAX_LENGTH`` characters,
    ``MAX_VALUES`` in an IN list); the stores parse again uncapped, so that vlsearch's own
    filters (eval's candidate lists) can be long. Nesting is always capped.
    """
    if not isinstance(where, str):
        raise InputError(f"a filter must be a string, not {type(where).__name__}")
    if capped and len(where) > MAX_LENGTH:
        raise InputError(f"invalid filter: {len(where)} characters, over the limit of {MAX_LENGTH}")
    try:
        where.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("invalid filter: not valid Unicode (a lone surrogate)") from None
    parser = _Parser(where, capped)
    root = parser.disjunction(0)
    if parser.peek() is not None:
        parser.fail(f"unexpected {parser.peek()[1]!r}")
    return Filter(root)


# ---------------------------------------------------------------- parsing

class _Parser:
    def __init__(self, where: str, capped: bool) -> None:
        self.where, self.capped = where, capped
        self.tokens = _tokens(where, self)
        self.pos = 0

    def fail(self, reason: str) -> None:
        shown = self.where if len(self.where) <= 80 else self.where[:77] + "..."
        raise InputError(f"invalid filter {shown!r}: {reason}")

    def peek(self, ahead: int = 0) -> tuple[str, str] | None:
        at = self.pos + ahead
        return self.tokens[at] if at < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token and token[0] == "name" and token[1].upper() in words:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        token = self.peek()
        if token is None or token[1] != text:
            self.fail(f"expected {text!r}, got {token[1]!r}" if token else f"expected {text!r} at the end")
        self.pos += 1

    def disjunction(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH}")
        operands = [self.conjunction(depth)]
        while self.keyword("OR"):
            operands.append(self.conjunction(depth))
        return operands[0] if len(operands) == 1 else Junction("OR", tuple(operands))

    def conjunction(self, depth: int) -> Node:
        operands = [self.negation(depth)]
        while self.keyword("AND"):
            operands.append(self.negation(depth))
        return operands[0] if len(operands) == 1 else Junction("AND", tuple(operands))

    def negation(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH}")
        if self.keyword("NOT"):
            return Not(self.negation(depth + 1))
        token = self.peek()
        if token is None:
            self.fail("unexpected end")
        if token[1] == "(":
            self.pos += 1
            inner = self.disjunction(depth + 1)
            self.expect(")")
            return inner
        return self.predicate()

    def predicate(self) -> Node:
        column = self.column()
        kind = COLUMNS[column]
        token = self.peek()
        if token and token[0] == "op":
            self.pos += 1
            return Compare(column, _OPS[token[1]], self.literal(column, kind))
        if self.keyword("IS"):
            negated = self.keyword("NOT")
            if not self.keyword("NULL"):
                self.fail("expected NULL after IS")
            return IsNull(column, negated)
        negated = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect("(")
            values = [self.literal(column, kind)]
            while self.peek() and self.peek()[1] == ",":
                self.pos += 1
                values.append(self.literal(column, kind))
            self.expect(")")
            if self.capped and len(values) > MAX_VALUES:
                self.fail(f"{len(values)} values in IN, over the limit of {MAX_VALUES}")
            return In(column, tuple(values), negated)
        if self.keyword("LIKE"):
            if kind is not str:
                self.fail(f"LIKE needs a text column, not {column!r}")
            return Like(column, str(self.literal(column, kind)), negated)
        if self.keyword("BETWEEN"):
            low = self.literal(column, kind)
            if not self.keyword("AND"):
                self.fail("expected AND in BETWEEN")
            return Between(column, low, self.literal(column, kind), negated)
        self.fail(f"expected a comparison after {column!r}, got {token[1]!r}" if token else
                  f"expected a comparison after {column!r}")
        raise AssertionError  # unreachable: fail raised

    def column(self) -> str:
        token = self.peek()
        if token is None:
            self.fail("expected a column at the end")
        kind, text = token
        name = text[1:-1] if kind == "name" and text[:1] in "\"`" else text
        following = self.peek(1)
        if kind == "name" and following and following[1] == "(":
            self.fail(f"functions are not allowed: {text!r}")
        if kind != "name" or name not in COLUMNS:
            known = ", ".join(COLUMNS)
            self.fail(f"unknown column {text!r} (columns: {known})" if kind == "name" else
                      f"expected a column, got {text!r}")
        self.pos += 1
        return name

    def literal(self, column: str, kind: type) -> Literal:
        token = self.peek()
        if token is None:
            self.fail(f"expected a value for {column!r} at the end")
        sign = ""
        if token[0] == "minus":
            sign = "-"
            self.pos += 1
            token = self.peek()
            if token is None or token[0] != "num":
                self.fail("'-' is allowed only before a number (arithmetic is not allowed)")
        text = token[1]
        if token[0] == "str" and not sign:
            if kind is not str:
                self.fail(f"{column!r} takes numbers, not {text!r}")
            self.pos += 1
            return text[1:-1].replace("''", "'")
        if token[0] != "num":
            self.fail(f"expected a value for {column!r}, got {text!r}")
        if kind is str:
            self.fail(f"{column!r} takes quoted text, not {sign}{text}")
        if len(text) > 30:
            self.fail(f"number too long: {text[:30]}...")
        self.pos += 1
        whole = re.fullmatch(r"\d+", text) is not None
        if kind is int and not whole:
            self.fail(f"{column!r} takes whole numbers, not {sign}{text}")
        value: Literal = int(sign + text) if whole else float(sign + text)
        if whole and abs(value) >= 2 ** 63 or isinstance(value, float) and not math.isfinite(value):
            self.fail(f"number out of range: {sign}{text}")
        return value


def _tokens(where: str, parser: _Parser) -> list[tuple[str, str]]:
    tokens, pos, end = [], 0, len(where.rstrip())
    while pos < end:
        match = _TOKEN.match(where, pos)
        if not match or match.end() == pos:
            parser.fail(f"unexpected {where[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "other":
            reason = "arithmetic is not allowed" if text in _ARITHMETIC else "not part of the filter language"
            if text == ";":
                reason = "one filter only, no statements"
            parser.fail(f"unexpected {text!r} ({reason})")
        if kind == "minus" and tokens and (tokens[-1][0] in ("num", "str") or tokens[-1][1] == ")" or (
                tokens[-1][0] == "name" and tokens[-1][1].upper() not in _KEYWORDS)):
            parser.fail("unexpected '-' (arithmetic is not allowed)")
        tokens.append((kind, text))
        pos = match.end()
    if not tokens:
        parser.fail("empty")
    return tokens


# ---------------------------------------------------------------- rendering

def _sql_literal(value: Literal) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _sql(node: Node) -> str:
    if isinstance(node, Compare):
        return f"{node.column} {node.op} {_sql_literal(node.value)}"
    if isinstance(node, In):
        return f"{node.column} {'NOT IN' if node.negated else 'IN'} ({', '.join(map(_sql_literal, node.values))})"
    if isinstance(node, Like):
        return f"{node.column} {'NOT LIKE' if node.negated else 'LIKE'} {_sql_literal(node.pattern)}"
    if isinstance(node, Between):
        return (f"{node.column} {'NOT BETWEEN' if node.negated else 'BETWEEN'} {_sql_literal(node.low)} "
                f"AND {_sql_literal(node.high)}")
    if isinstance(node, IsNull):
        return f"{node.column} IS {'NOT NULL' if node.negated else 'NULL'}"
    if isinstance(node, Not):
        return f"NOT ({_sql(node.operand)})"
    return "(" + f" {node.kind} ".join(_sql(o) for o in node.operands) + ")"


def _milvus_literal(value: Literal) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _milvus(node: Node) -> str:
    if isinstance(node, Compare):
        op = "==" if node.op == "=" else node.op
        return f"{node.column} {op} {_milvus_literal(node.value)}"
    if isinstance(node, In):
        values = ", ".join(map(_milvus_literal, node.values))
        return f"{node.column} {'not in' if node.negated else 'in'} [{values}]"
    if isinstance(node, Like):
        like = f"{node.column} like {_milvus_literal(node.pattern)}"
        return f"not ({like})" if node.negated else like
    if isinstance(node, Between):
        inside = (f"({node.column} >= {_milvus_literal(node.low)} and "
                  f"{node.column} <= {_milvus_literal(node.high)})")
        return f"not {inside}" if node.negated else inside
    if isinstance(node, IsNull):
        return f"{node.column} is {'not null' if node.negated else 'null'}"
    if isinstance(node, Not):
        return f"not ({_milvus(node.operand)})"
    return "(" + f" {node.kind.lower()} ".join(_milvus(o) for o in node.operands) + ")"
