"""Jinja2 for the dashboard: autoescaping on for every template, so every value a task or a message
carries (payloads, error messages, x-death reasons, worker ids) reaches the page as text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jinja2 import Environment, PackageLoader, select_autoescape

SPARK_WIDTH = 120
SPARK_HEIGHT = 24
SECRET_KEY = re.compile(r"token|passw|secret|credential|authori[sz]ation|api[-_]?key|private|cookie", re.I)
REDACTED = "[redacted]"
MAX_SHOWN_CHARS = 20_000


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("service.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["spark"] = spark_points
    env.filters["ago"] = ago
    env.filters["rate"] = rate
    env.filters["pretty"] = pretty
    env.filters["num"] = num
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def spark_points(values: tuple[int, ...]) -> str:
    """The polyline of a sparkline, scaled to its own maximum."""
    if not values:
        return ""
    top = max(max(values), 1)
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    height = SPARK_HEIGHT - 2
    return " ".join(f"{i * step:.1f},{height + 1 - (v / top) * height:.1f}" for i, v in enumerate(values))


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 0:
        return f"in {-seconds:.0f}s"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}/s"


def num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def pretty(value: Any) -> str:
    """JSON for a <pre>, cut at `MAX_SHOWN_CHARS` (the template escapes it)."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "\n… (cut)"


def redact(value: Any) -> Any:
    """A payload as shown: values under secret-looking keys hidden, credentials cut out of URLs."""
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return _without_userinfo(value)
    return value


def _without_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{REDACTED}@{host}", parts.path, parts.query, parts.fragment))
