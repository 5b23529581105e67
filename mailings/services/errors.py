"""MailingError: what the mailings services refuse, per field."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class MailingError(ValidationError):
    """A refused write or transition. `errors`: {field: message} ("__all__" for the whole
    mailing); `message_dict` keyed the same way, so forms and the API show each where it belongs."""

    def __init__(self, errors: dict[str, str] | str) -> None:
        if isinstance(errors, str):
            errors = {"__all__": errors}
        self.errors = dict(errors)
        super().__init__({k: [v] for k, v in self.errors.items()})

    @property
    def text(self) -> str:
        """The refusal in one line for a message or a form's error: the messages, without field names."""
        return "; ".join(self.errors.values())

    def __str__(self) -> str:
        return "; ".join(m if f == "__all__" else f"{f}: {m}" for f, m in self.errors.items())
