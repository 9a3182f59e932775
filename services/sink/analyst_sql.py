"""What analyst SQL (``POST /v1/sql``) may do, checked on ClickHouse's own parse (pure).

The store normalises the query with the engine's parser
(``formatQuerySingleLine``: one statement, comments dropped), wraps it as a
subquery and asks the engine for that text's syntax tree (``EXPLAIN AST``,
a parse: nothing runs). :func:`check_explain_ast` walks every node of that
tree: only the node kinds a plain SELECT is made of, only the functions of
:data:`ANALYST_FUNCTIONS` (no ``file``, ``url``, ``s3``, ``remote``,
``executable``, ``input``, ``dictGet``, ``getSetting``, introspection …) and
only the project's tables. The same text then runs with :class:`AnalystLimits`
(``readonly=1`` last, so the query cannot lift them). Nothing here matches
strings of the query itself.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

# ClickHouse runs a query of a higher priority value only while none of a lower
# one runs: the store's reads run at 1, its inserts at 2, analyst SQL at this.
ANALYST_PRIORITY = 10

# What analysts may read: the events, the session rows and their summary view.
ANALYST_TABLES = frozenset({"events", "sessions", "session_summaries"})

# Node kinds of EXPLAIN AST that a SELECT over tables and expressions is made of.
# Not here, so refused: ``Set`` (a SETTINGS clause), ``ColumnsApplyTransformer``
# (``* APPLY(f)`` calls a function the tree does not name), ``QueryParameter``.
AST_NODES = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "SelectQuery",
        "ExpressionList",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableIdentifier",
        "TableJoin",
        "ArrayJoin",
        "Subquery",
        "WithElement",
        "Identifier",
        "Literal",
        "Function",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "QualifiedColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "ColumnsReplaceTransformer::Replacement",
        "OrderByElement",
        "InterpolateElement",
        "WindowDefinition",
        "WindowListElement",
        "SampleRatio",
    }
)


# Functions over values only: operators (as the parser names them), conditions,
# types, numbers, strings, URLs, JSON, dates, arrays, tuples, maps, hashes,
# aggregates and window functions. Compared in lower case (ClickHouse's
# case-insensitive aliases are spelled freely; any other spelling is unknown).
# Deliberately absent: anything that reads files, the network, the environment,
# settings, dictionaries, other tables or the process (introspection), sleeps or
# throws, and what calls a function named in a string (arrayReduce, initializeAggregation).
def _lowered_names(text: str) -> frozenset[str]:
    return frozenset(name.lower() for name in text.split())


ANALYST_FUNCTIONS = _lowered_names(
    """
    equals notEquals less greater lessOrEquals greaterOrEquals and or not xor
    plus minus multiply divide intDiv intDivOrZero modulo moduloOrZero negate abs
    in notIn globalIn globalNotIn nullIn notNullIn exists
    like notLike ilike notILike match multiMatchAny
    if multiIf isNull isNotNull coalesce ifNull nullIf assumeNotNull toNullable isFinite isNaN
    tuple tupleElement array arrayElement map mapKeys mapValues mapContains lambda
    CAST _CAST accurateCastOrNull toTypeName materialize
    toString toFixedString toInt8 toInt16 toInt32 toInt64 toUInt8 toUInt16 toUInt32 toUInt64
    toFloat32 toFloat64 toDecimal64 toInt32OrNull toInt64OrNull toFloat64OrNull toInt64OrZero
    toFloat64OrZero toDateOrNull toDateTimeOrNull toBool reinterpretAsString
    round floor ceil trunc roundToExp2 sqrt cbrt exp log log2 log10 pow power sign
    least greatest e pi
    length lengthUTF8 empty notEmpty lower upper lowerUTF8 upperUTF8 reverse
    concat concatWithSeparator substring substr substringUTF8 left right leftPad rightPad
    trim trimLeft trimRight trimBoth startsWith endsWith position positionCaseInsensitive
    positionUTF8 countSubstrings replaceOne replaceAll replaceRegexpOne replaceRegexpAll
    extract extractAll extractGroups splitByChar splitByString splitByRegexp
    arrayStringConcat repeat leftUTF8 rightUTF8 base64Encode hex formatRow formatRowNoNewline
    domain domainWithoutWWW topLevelDomain protocol path pathFull queryString fragment
    cutQueryString cutFragment cutQueryStringAndFragment cutWWW extractURLParameter
    extractURLParameters decodeURLComponent encodeURLComponent URLHierarchy
    JSONHas JSONLength JSONType JSONExtract JSONExtractString JSONExtractInt JSONExtractUInt
    JSONExtractFloat JSONExtractBool JSONExtractRaw JSONExtractArrayRaw JSONExtractKeys
    JSONExtractKeysAndValues simpleJSONExtractString simpleJSONExtractInt
    simpleJSONExtractFloat simpleJSONExtractRaw simpleJSONHas JSON_VALUE JSON_QUERY
    JSON_EXISTS isValidJSON
    now now64 today yesterday toDate toDate32 toDateTime toDateTime64 toTimeZone toUnixTimestamp
    toUnixTimestamp64Milli fromUnixTimestamp fromUnixTimestamp64Milli parseDateTimeBestEffort
    parseDateTimeBestEffortOrNull formatDateTime dateDiff date_diff dateTrunc date_trunc
    toYear toQuarter toMonth toWeek toISOWeek toDayOfMonth toDayOfWeek toDayOfYear toHour
    toMinute toSecond toYYYYMM toYYYYMMDD toStartOfYear toStartOfQuarter toStartOfMonth
    toStartOfWeek toMonday toStartOfDay toStartOfHour toStartOfMinute toStartOfFiveMinutes
    toStartOfFifteenMinutes toStartOfInterval timeSlot
    toIntervalSecond toIntervalMinute toIntervalHour toIntervalDay toIntervalWeek
    toIntervalMonth toIntervalQuarter toIntervalYear addSeconds addMinutes addHours addDays
    addWeeks addMonths addYears subtractSeconds subtractMinutes subtractHours subtractDays
    subtractWeeks subtractMonths subtractYears
    arrayJoin range arrayMap arrayFilter arrayExists arrayAll arrayCount arraySum arrayAvg
    arrayMin arrayMax arrayFirst arrayLast arrayFirstIndex arraySort arrayReverseSort
    arrayReverse arrayDistinct arrayUniq arrayConcat arraySlice arrayPushBack arrayPushFront
    arrayEnumerate arrayEnumerateUniq arrayCompact arrayFlatten arrayZip arrayIntersect
    arrayCumSum arrayDifference arrayResize has hasAll hasAny indexOf countEqual
    emptyArrayString groupArrayInsertAt
    cityHash64 sipHash64 xxHash64 murmurHash3_64 MD5 SHA256 intHash64 farmFingerprint64
    count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined
    uniqHLL12 groupArray groupUniqArray groupArraySample topK quantile quantiles
    quantileExact quantilesExact quantileTiming quantileTDigest median stddevPop stddevSamp
    varPop varSamp covarPop covarSamp corr sumMap minMap maxMap histogram
    countDistinct simpleLinearRegression groupBitAnd groupBitOr groupBitXor
    row_number rank dense_rank percent_rank cume_dist ntile first_value last_value nth_value
    lagInFrame leadInFrame lag lead
    """
)

# Aggregate combinators: ``countIf``, ``sumArray``, ``uniqExactIf`` … are their base
# aggregate's, so they are allowed exactly when the base is.
COMBINATORS = ("If", "Array", "Distinct", "OrNull", "OrDefault", "ForEach", "State", "Merge")
_AGGREGATES = _lowered_names(
    """
    count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined
    uniqHLL12 groupArray groupUniqArray topK quantile quantiles quantileExact quantilesExact
    quantileTiming quantileTDigest median stddevPop stddevSamp varPop varSamp covarPop
    covarSamp corr sumMap minMap maxMap histogram
    """
)
_IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A node line: indentation, kind, then the name (for Function, Identifier,
# TableIdentifier) and an optional "(alias …)" / "(children N)" tail.
_NODE = re.compile(r"^( *)([A-Za-z][A-Za-z:]*)(?: (.*))?$")


class AnalystSqlRefused(ValueError):
    """A query the endpoint does not run; ``code`` is the API error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AnalystLimits:
    """What one analyst query may use (``SINK_SQL_*``)."""

    max_rows: int = 10_000
    max_result_bytes: int = 16 * 1024 * 1024
    max_seconds: float = 30.0
    max_memory_bytes: int = 1_000_000_000
    # One core of the machine's: the writer and the read API keep the others.
    max_threads: int = 1
    # ``additional_table_filters`` (table -> condition), e.g. the console's
    # analysts see only their sites' rows; readonly stops a query changing it.
    row_filters: dict[str, str] | None = None

    def settings(self) -> dict[str, Any]:
        """Engine settings of the query; ``readonly`` last: it forbids changing the others."""
        return {
            "max_execution_time": self.max_seconds,
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_rows + 1,
            # A backstop only (checked per block, so not a cap): the stream is cut
            # at max_result_bytes of JSON, which the engine's count reaches later.
            "max_result_bytes": 4 * self.max_result_bytes,
            "result_overflow_mode": "break",
            # Small blocks: the result is read block by block and cut at the byte
            # cap, so at most one block beyond it is ever decoded in the sink.
            "max_block_size": 1024,
            "max_threads": self.max_threads,
            # Paused while a read or an insert of the store runs (priorities 1, 2).
            "priority": ANALYST_PRIORITY,
            "allow_introspection_functions": 0,
            "allow_ddl": 0,
            **({"additional_table_filters": self.row_filters} if self.row_filters else {}),
            "readonly": 1,
        }


@dataclass(frozen=True, slots=True)
class AnalystResult:
    """The rows of an analyst query as the endpoint answers them."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False


@dataclass(slots=True)
class _Node:
    kind: str
    rest: str
    children: list[_Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The name before any ``(alias …)``/``(children N)`` tail, '' if it is not plain."""
        head, _, tail = self.rest.partition(" ")
        if tail and not tail.startswith("("):
            return ""  # a name with a space: not a plain identifier
        return head if _NAME.fullmatch(head.replace(".", "_")) else ""


def wrapped_sql(normalized: str) -> str:
    """The analyst query as a subquery: a trailing FORMAT, SETTINGS or INTO OUTFILE
    cannot parse inside it, and the limits apply to all of it."""
    return f"SELECT * FROM (\n{normalized}\n)"


def _parse_tree(explain: str) -> list[_Node]:
    roots: list[_Node] = []
    stack: list[tuple[int, _Node]] = []
    for line in explain.splitlines():
        if not line.strip():
            continue
        match = _NODE.match(line)
        if match is None:
            raise AnalystSqlRefused("not_allowed", "The query could not be checked.")
        depth = len(match.group(1))
        node = _Node(match.group(2), match.group(3) or "")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((depth, node))
    return roots


def _function_allowed(name: str) -> bool:
    lowered = name.lower()
    return lowered in ANALYST_FUNCTIONS or _is_aggregate(lowered)


def _is_aggregate(lowered: str) -> bool:
    """An allowed aggregate, possibly with combinators (``uniqexactif``, ``sumarrayif``)."""
    if lowered in _AGGREGATES:
        return True
    for combinator in COMBINATORS:
        suffix = combinator.lower()
        if lowered.endswith(suffix) and _is_aggregate(lowered[: -len(suffix)]):
            return True
    return False


def _table_allowed(name: str, database_tables: Collection[str]) -> bool:
    """An allowed table, or a CTE: a plain name that is no table of the database
    (an unqualified name is a CTE's or the current database's, nothing else)."""
    if name in ANALYST_TABLES:
        return True
    return bool(name) and "." not in name and name not in database_tables


def _shown(name: str) -> str:
    """A name from the query as it may appear in an error: plain and bounded, or nothing."""
    return f" '{name}'" if name and len(name) <= 64 and _NAME.fullmatch(name) else ""


def _check(node: _Node, database_tables: Collection[str]) -> None:
    if node.kind not in AST_NODES:
        what = "a SETTINGS clause" if node.kind == "Set" else f"the construct{_shown(node.kind)}"
        raise AnalystSqlRefused("not_allowed", f"Analyst SQL may not use {what}.")
    if node.kind == "Function":
        if not _function_allowed(node.name):
            raise AnalystSqlRefused(
                "function_not_allowed",
                f"The function{_shown(node.name)} is not allowed in analyst SQL "
                "(no files, network, settings, dictionaries, table functions or introspection).",
            )
        if node.name.lower() in _IN_FUNCTIONS:
            # ``x IN name``: a bare name on the right is a table (or a CTE).
            args = node.children[0].children if node.children else []
            for arg in args[1:2]:
                if arg.kind == "Identifier" and not _table_allowed(arg.name, database_tables):
                    raise _table_refused(arg.name)
    if node.kind == "TableIdentifier" and not _table_allowed(node.name, database_tables):
        raise _table_refused(node.name)
    for child in node.children:
        _check(child, database_tables)


def _table_refused(name: str) -> AnalystSqlRefused:
    return AnalystSqlRefused(
        "table_not_allowed",
        f"The table{_shown(name)} is not allowed: analyst SQL reads only "
        f"{', '.join(sorted(ANALYST_TABLES))} (and its own WITH names).",
    )


def check_explain_ast(explain: str, database_tables: Collection[str]) -> None:
    """Raise :class:`AnalystSqlRefused` unless every node of ``EXPLAIN AST`` output is allowed.

    ``database_tables``: the names of the current database's tables and views
    (a WITH name may not shadow one that analysts may not read).
    """
    roots = _parse_tree(explain)
    if not roots:
        raise AnalystSqlRefused("not_allowed", "The query could not be checked.")
    for root in roots:
        _check(root, database_tables)


def capped_rows(
    blocks: Iterable[Sequence[Sequence[Any]]], limits: AnalystLimits
) -> tuple[list[list[Any]], bool]:
    """The result's first rows within ``max_rows`` and ``max_result_bytes`` (as JSON),
    and whether anything was cut. Stops reading ``blocks`` at the first row beyond."""
    rows: list[list[Any]] = []
    size = 0
    for block in blocks:
        for row in block:
            size += len(orjson.dumps(list(row), default=str)) + 1
            if len(rows) >= limits.max_rows or size > limits.max_result_bytes:
                return rows, True
            rows.append(list(row))
    return rows, False
