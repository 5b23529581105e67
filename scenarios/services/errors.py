"""ScenarioError: what the scenarios services refuse, per field or step."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError


class ScenarioError(ValidationError):
    """A refused write or transition. `errors`: {field, step key ("s4"), dotted path
    ("steps[3].config.template") or "__all__": message}; `message_dict` is keyed the same way, so
    forms, the editor and the API show each where it belongs (as `mailings.services.errors`).
    `problems`: when publishing was refused by validation, the `validation.Problem` list itself
    (step key, config field, message) for callers that outline steps or name fields."""

    def __init__(self, errors: dict[str, str] | str, *, problems: list[Any] | None = None) -> None:
        if isinstance(errors, str):
            errors = {"__all__": errors}
        self.errors = dict(errors)
        self.problems = list(problems or [])
        super().__init__({k: [v] for k, v in self.errors.items()})

    @property
    def text(self) -> str:
        """The refusal in one line (the messages, without their keys)."""
        return "; ".join(self.errors.values())

    def __str__(self) -> str:
        return "; ".join(m if f == "__all__" else f"{f}: {m}" for f, m in self.errors.items())
