"""ContentError: what the content services refuse, per part (or field) and line."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class ContentError(ValidationError):
    """A refused write. `errors`: [(part, line | None, message)]; `message_dict` keyed by part
    ("name", "subject", "html", "buttons[0][1].url", "key"...), each message prefixed with its
    line when known; `part`, `line` and `message` describe the first problem."""

    def __init__(self, errors: list[tuple[str, int | None, str]] | dict[str, str]) -> None:
        if isinstance(errors, dict):
            errors = [(part, None, message) for part, message in errors.items()]
        self.errors = errors
        by_part: dict[str, list[str]] = {}
        for part, line, message in errors:
            by_part.setdefault(part or "__all__", []).append(f"line {line}: {message}" if line else message)
        super().__init__(by_part)
        self.part, self.line, self.message = errors[0]

    def __str__(self) -> str:
        return "; ".join(f"{p}: {f'line {ln}: ' if ln else ''}{m}" if p else m for p, ln, m in self.errors)
