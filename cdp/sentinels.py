"""UNSET: the default of a service's optional keyword arguments where None is a value someone may
set (`segment_update(description=None)` differs from leaving the description alone)."""

from __future__ import annotations

from typing import Any

UNSET: Any = object()
