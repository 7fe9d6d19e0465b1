"""The experiment search language: a hand-written tokenizer and parser to a typed AST.

Grammar (whitespace separates terms; all terms must hold)::

    query   = { term }
    term    = [ "-" ] atom                      "-" negates the atom it touches
    atom    = phrase | filter | created | metric | word
    phrase  = '"' { any character but '"' } '"'
    filter  = ( "tag" | "status" | "model" | "dataset" ) ":" value
    created = "created" ":" [ operator ] value  ISO date or datetime, UTC when naive
    metric  = "metric." NAME operator value     NAME = [A-Za-z_][A-Za-z0-9_]*, value a number
    operator = ">=" | "<=" | ">" | "<" | "="
    value   = phrase | bare
    word    = bare
    bare    = { any character but whitespace and '"' }

Field names are case-insensitive; a bare run that starts like ``name:`` with an
unknown name is an error (quote it to search for the text). A phrase needs no
space around it: ``a"b c"`` is the word ``a`` and the phrase ``b c``. A date
stands for its whole UTC day: ``created:>2026-01-01`` is from January 2 on,
``created:2026-01-01`` (no operator means ``=``) is that day.

Errors are :class:`~pfd_db.errors.InvalidQuery` with ``position``, the 0-based
index of the offending character in the query.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from pfd_db.errors import InvalidQuery
from pfd_db.models.enums import ExperimentStatus

MAX_QUERY_LENGTH = 1000
FIELDS = ("tag", "status", "model", "dataset", "created")
METRIC_PREFIX = "metric."

_FIELD_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):")
_METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATOR = re.compile(r">=|<=|>|<|=")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_QUOTE = '"'


class Op(StrEnum):
    """A comparison operator."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "="


@dataclass(frozen=True)
class Word:
    """A free word, searched in the full-text document (stemmed)."""

    text: str


@dataclass(frozen=True)
class Phrase:
    """Words that must appear together, in this order."""

    text: str


@dataclass(frozen=True)
class TagIs:
    """The experiment carries the tag with this name or slug."""

    name: str


@dataclass(frozen=True)
class StatusIs:
    status: ExperimentStatus


@dataclass(frozen=True)
class ModelIs:
    model_type: str


@dataclass(frozen=True)
class DatasetIs:
    """The experiment ran on the dataset with this name."""

    name: str


@dataclass(frozen=True)
class MetricCompare:
    """``metrics[name] <op> value``, compared as floats."""

    name: str
    op: Op
    value: float


@dataclass(frozen=True)
class CreatedCompare:
    """``created_at <op> moment``; when ``whole_day``, ``moment`` is the start of
    a UTC day and the comparison is with that whole day."""

    op: Op
    moment: datetime
    whole_day: bool


Term = Word | Phrase | TagIs | StatusIs | ModelIs | DatasetIs | MetricCompare | CreatedCompare


@dataclass(frozen=True)
class Not:
    """Experiments the term does not match."""

    term: Term


Clause = Term | Not


@dataclass(frozen=True)
class Query:
    """A parsed query: experiments matching every clause."""

    clauses: tuple[Clause, ...] = ()


def parse(text: str) -> Query:
    """``text`` parsed, or :class:`InvalidQuery` naming what is wrong and where."""
    _check_characters(text)
    scanner = _Scanner(text)
    clauses: list[Clause] = []
    scanner.skip_spaces()
    while not scanner.at_end():
        clauses.append(_clause(scanner))
        scanner.skip_spaces()
    return Query(tuple(clauses))


def _check_characters(text: object) -> None:
    if not isinstance(text, str):
        raise InvalidQuery("the query must be a string", 0)
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(
            f"the query is longer than {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH
        )
    for position, char in enumerate(text):
        if char == "\x00" or unicodedata.category(char) == "Cs":
            raise InvalidQuery(f"character {char!r} is not allowed", position)


# --- scanning ----------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """A run of the query's text and where it starts."""

    text: str
    position: int

    def after(self, count: int) -> _Piece:
        return _Piece(self.text[count:], self.position + count)


class _Scanner:
    """A cursor over the query text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if not self.at_end() else ""

    def at_boundary(self) -> bool:
        return self.at_end() or self.peek().isspace()

    def skip_spaces(self) -> None:
        while not self.at_end() and self.peek().isspace():
            self.pos += 1

    def read_bare(self) -> _Piece:
        start = self.pos
        while not self.at_boundary() and self.peek() != _QUOTE:
            self.pos += 1
        return _Piece(self.text[start : self.pos], start)

    def read_quoted(self) -> _Piece:
        opening = self.pos
        closing = self.text.find(_QUOTE, opening + 1)
        if closing < 0:
            raise InvalidQuery("unterminated quote", opening)
        self.pos = closing + 1
        return _Piece(self.text[opening + 1 : closing], opening + 1)


# --- parsing -----------------------------------------------------------------


def _clause(scanner: _Scanner) -> Clause:
    if scanner.peek() != "-":
        return _atom(scanner)
    dash = scanner.pos
    scanner.pos += 1
    if scanner.at_boundary():
        raise InvalidQuery("'-' must be followed by a word, phrase or filter", dash)
    return Not(_atom(scanner))


def _atom(scanner: _Scanner) -> Term:
    if scanner.peek() == _QUOTE:
        return Phrase(scanner.read_quoted().text)
    bare = scanner.read_bare()
    field = _FIELD_PREFIX.match(bare.text)
    if field:
        return _filter(scanner, field[1], bare)
    if bare.text[: len(METRIC_PREFIX)].lower() == METRIC_PREFIX:
        return _metric(scanner, bare.after(len(METRIC_PREFIX)))
    return Word(bare.text)


def _filter(scanner: _Scanner, name: str, bare: _Piece) -> Term:
    field = name.lower()
    rest = bare.after(len(name) + 1)
    if field not in FIELDS:
        expected = ", ".join(FIELDS)
        raise InvalidQuery(
            f"unknown field '{name}' (expected {expected} or metric.NAME)", bare.position
        )
    if field == "created":
        return _created(scanner, rest)
    value = _value(scanner, rest, field)
    if field == "status":
        return StatusIs(_status(value))
    if field == "tag":
        return TagIs(value.text)
    if field == "model":
        return ModelIs(value.text)
    return DatasetIs(value.text)


def _created(scanner: _Scanner, rest: _Piece) -> CreatedCompare:
    op, rest = _operator(rest, required=False)
    value = _value(scanner, rest, "created")
    moment, whole_day = _moment(value)
    return CreatedCompare(op, moment, whole_day)


def _metric(scanner: _Scanner, rest: _Piece) -> MetricCompare:
    name = _METRIC_NAME.match(rest.text)
    if not name:
        raise InvalidQuery("expected a metric name like metric.accuracy", rest.position)
    op, rest = _operator(rest.after(name.end()), required=True)
    value = _value(scanner, rest, f"metric.{name[0]}")
    return MetricCompare(name[0], op, _number(value))


def _value(scanner: _Scanner, rest: _Piece, field: str) -> _Piece:
    """The value of ``field``: the rest of the bare run, or else a quoted string."""
    if rest.text:
        return rest
    if scanner.peek() != _QUOTE:
        raise InvalidQuery(f"missing value for {field}", rest.position)
    quoted = scanner.read_quoted()
    value = quoted.text.strip()
    if not value:
        raise InvalidQuery(f"empty value for {field}", quoted.position)
    return _Piece(value, quoted.position + quoted.text.index(value))


def _operator(rest: _Piece, *, required: bool) -> tuple[Op, _Piece]:
    found = _OPERATOR.match(rest.text)
    if found:
        return Op(found[0]), rest.after(found.end())
    if required:
        raise InvalidQuery("expected an operator: > >= < <= =", rest.position)
    return Op.EQ, rest


def _status(value: _Piece) -> ExperimentStatus:
    try:
        return ExperimentStatus(value.text.lower())
    except ValueError:
        allowed = ", ".join(status.value for status in ExperimentStatus)
        raise InvalidQuery(
            f"unknown status '{value.text}' (expected one of {allowed})", value.position
        ) from None


def _number(value: _Piece) -> float:
    if not _NUMBER.fullmatch(value.text):
        raise InvalidQuery(f"'{value.text}' is not a number", value.position)
    number = float(value.text)
    if not math.isfinite(number):
        raise InvalidQuery(f"number '{value.text}' is out of range", value.position)
    return number


def _moment(value: _Piece) -> tuple[datetime, bool]:
    """The UTC moment ``value`` names, and whether it names a whole day."""
    try:
        return datetime.combine(date.fromisoformat(value.text), time(), UTC), True
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.text)
        return (
            moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        ), False
    except (ValueError, OverflowError):
        raise InvalidQuery(
            f"'{value.text}' is not an ISO date or datetime (e.g. 2026-01-31 or "
            "2026-01-31T12:00:00+00:00)",
            value.position,
        ) from None


def day_after(start: datetime) -> datetime:
    """The start of the UTC day after the one starting at ``start`` (clamped at the end of time)."""
    try:
        return start + timedelta(days=1)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)
