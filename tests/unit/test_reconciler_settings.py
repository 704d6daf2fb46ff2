"""The reconciler's settings: safe defaults, and a bad value is one line naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings, describe_error

pytestmark = pytest.mark.unit


def test_defaults_leave_a_normal_wait_alone() -> None:
    settings = Settings()
    assert settings.reconcile_interval_ms == 5_000
    assert settings.reconcile_pending_after_ms == 30_000
    assert settings.reconcile_lease_grace_ms > 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECONCILE_INTERVAL_MS", "0"),
        ("RECONCILE_INTERVAL_MS", "soon"),
        ("RECONCILE_PENDING_AFTER_MS", "-1"),
        ("RECONCILE_LEASE_GRACE_MS", "-5"),
    ],
)
def test_a_bad_value_names_its_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_error(raised.value)
    assert line.startswith(f"invalid configuration: {variable}:")
    assert "\n" not in line
