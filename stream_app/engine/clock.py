"""Event-time instants: integer microseconds since the Unix epoch, UTC.

Integers keep comparisons exact (watermarks, deadlines, windows) and cheap; the engine never reads
a wall clock. Fractions finer than a microsecond are truncated (documented in the README).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

# Final: the compiled engine uses them as constants (a plain module global is a dict lookup)
US: Final = 1
MS: Final = 1_000
SECOND: Final = 1_000_000
MINUTE: Final = 60_000_000
HOUR: Final = 3_600_000_000
DAY: Final = 86_400_000_000

#: An instant or day index passed on as a Python object. Compiled (mypyc), an `int` parameter or
#: local is a native integer, boxed into a new object at every store into a list, tuple or optional
#: field; one event's instant and day are stored in up to five places, so the engine's hot path
#: hands them on boxed once (about 100 bytes a customer). Interpreted, it is a plain int either way.
SharedInt = Any

#: SPEC §1 bounds: [2000-01-01T00:00Z, 2100-01-01T00:00Z)
MIN_INSTANT = 946_684_800 * SECOND
MAX_INSTANT = 4_102_444_800 * SECOND

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (no datetime objects: this is hot)."""
    y1 = y - 1
    days = y1 * 365 + y1 // 4 - y1 // 100 + y1 // 400 + _DAYS_BEFORE_MONTH[m] + d
    if m > 2 and _is_leap(y):
        days += 1
    return days - 719_163  # days from 0001-01-01 to 1970-01-01, plus the 1-based day


_DATE_CACHE: dict[str, int | None] = {}
_HOUR_CACHE: dict[str, int] = {}


def _date_base(text: str) -> int | None:
    """Microseconds at midnight of the `YYYY-MM-DD` prefix, None for an impossible date (cached)."""
    base = _DATE_CACHE.get(text)
    if base is None and text not in _DATE_CACHE:
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
        if 1 <= month <= 12 and 1 <= day <= (
            31, 29 if _is_leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
        )[month - 1]:
            base = _days_from_civil(year, month, day) * DAY
        if len(_DATE_CACHE) > 100_000:
            _DATE_CACHE.clear()  # bounded: a century of dates fits, garbage input cannot grow it
        _DATE_CACHE[text] = base
    return base


def parse_rfc3339(text: str) -> int | None:
    """Parse the SPEC's RFC 3339 subset to microseconds; None when the form or a value is wrong."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    if len(text) == 20:  # the common `YYYY-MM-DDTHH:MM:SSZ`: cache per date and hour
        base_h = _HOUR_CACHE.get(text[:13])
        if base_h is None:
            base = _date_base(text[:10])
            hour = int(text[11:13])
            if base is None or hour > 23:
                return None
            if len(_HOUR_CACHE) > 200_000:
                _HOUR_CACHE.clear()
            base_h = _HOUR_CACHE[text[:13]] = base + hour * 3600 * SECOND
        minute, sec = int(text[14:16]), int(text[17:19])
        if minute > 59 or sec > 59:
            return None
        return base_h + (minute * 60 + sec) * SECOND
    base = _date_base(text[:10])
    # The pattern fixes the positions of the time fields.
    hour, minute, sec = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if base is None or hour > 23 or minute > 59 or sec > 59:
        return None
    us = base + (hour * 3600 + minute * 60 + sec) * SECOND
    frac = m[7]
    if frac:
        us += int((frac + "00000")[:6])
    if m[8] is None:
        oh, om = int(m[10]), int(m[11])
        if oh > 23 or om > 59:
            return None
        offset = (oh * 60 + om) * MINUTE
        us += -offset if m[9] == "+" else offset
    return us


#: instant -> its text: a customer's record repeats its instants (tier_since, first and last order,
#: the clock twice) in every snapshot the stream publishes; this was ~10 % of a scoring process
_INSTANT_TEXT: dict[int, str] = {}


def format_instant_cached(us: int) -> str:
    """`format_instant` through a bounded cache: for records, whose instants recur (elsewhere the
    instants are mostly new, and the lookup would only add to the cost)."""
    text = _INSTANT_TEXT.get(us)
    if text is None:
        if len(_INSTANT_TEXT) >= 65_536:
            _INSTANT_TEXT.clear()
        text = _INSTANT_TEXT[us] = format_instant(us)
    return text


#: "THH:MM:" for each minute of a day, "SS" for each second, ".mmm" for each millisecond and "uuu"
#: for the microseconds below it: an f-string of str pieces compiles to one allocation, where `+`
#: and str(int) allocate at every step and a format spec is a `str.format` call even compiled
_MINUTE_TEXT: Final = tuple(f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECOND_TEXT: Final = tuple(f"{s:02d}" for s in range(60))
_MS_TEXT: Final = tuple(f".{k:03d}" for k in range(1000))
_US_TEXT: Final = tuple(f"{k:03d}" for k in range(1000))
#: "YYYY-MM-DD" of the days of SPEC §1's range (2000-01-01 on), filled as they occur: a list
#: index, where a dict would box the day number for every lookup
_DAY0: Final = 10_957
_DAYS: Final = [""] * 36_525


def _date_text(days: int) -> str:
    i = days - _DAY0
    if 0 <= i < 36_525:
        text = _DAYS[i]
        if not text:
            text = _DAYS[i] = datetime.fromtimestamp(days * 86_400, tz=UTC).strftime("%Y-%m-%d")
        return text
    return datetime.fromtimestamp(days * 86_400, tz=UTC).strftime("%Y-%m-%d")


def format_instant(us: int) -> str:
    """RFC 3339 UTC with `Z`; fraction omitted when zero, milliseconds when whole, else micros."""
    # `%` and `//` only: compiled, a product with an operand of 2**30 or more (DAY, SECOND times
    # a day count) leaves the native fast path for Python's long multiplication (~800 instructions)
    secs = us // SECOND
    frac = us % SECOND
    days = secs // 86_400
    rem = secs % 86_400
    date = _date_text(days)
    minute = _MINUTE_TEXT[rem // 60]
    second = _SECOND_TEXT[rem % 60]
    if frac == 0:
        return f"{date}{minute}{second}Z"
    ms = frac // MS
    micros = frac % MS
    if micros == 0:
        return f"{date}{minute}{second}{_MS_TEXT[ms]}Z"
    return f"{date}{minute}{second}{_MS_TEXT[ms]}{_US_TEXT[micros]}Z"


class _Last:
    """The instant `format_last` formatted last, and its text."""

    __slots__ = ("text", "us")

    def __init__(self) -> None:
        self.us = -1
        self.text = ""


_LAST: Final = _Last()


def format_last(us: int) -> str:
    """`format_instant` remembering one instant: an event's tier change and segment changes, and
    all the changes of one sweep, share theirs (a new instant costs ~1,500 instructions)."""
    last = _LAST
    if us != last.us:
        text = format_instant(us)
        last.us = -1  # a reader between these stores formats again, never takes a wrong pair
        last.text = text
        last.us = us
    return last.text


def format_optional(us: int | None) -> str | None:
    return None if us is None else format_instant(us)


def format_optional_cached(us: int | None) -> str | None:
    return None if us is None else format_instant_cached(us)


def day_of(us: int) -> int:
    """UTC day index (days since 1970-01-01)."""
    return us // DAY


def next_midnight_after(us: int) -> int:
    """The first UTC midnight strictly after `us`."""
    return us - us % DAY + DAY  # no product: see format_instant


def midnight_at_or_after(us: int) -> int:
    return us + -us % DAY
