"""How much the property suites run, from the environment, so the gate can scale them.

`PROPERTY_EXAMPLES` (state-machine programs, default 8), `PROPERTY_STEPS` (rules per program,
default 12) and `PROPERTY_MALFORMED_EXAMPLES` (requests per malformed-request test, default 150).
The defaults keep `pytest scenarios/property` at about three minutes on a 2-core machine.
A value that is not a positive integer stops the run at import, naming the variable.
"""

from __future__ import annotations

import os


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return value


STATE_MACHINE_EXAMPLES = _positive_int("PROPERTY_EXAMPLES", 8)
STATE_MACHINE_STEPS = _positive_int("PROPERTY_STEPS", 12)
MALFORMED_EXAMPLES = _positive_int("PROPERTY_MALFORMED_EXAMPLES", 150)
