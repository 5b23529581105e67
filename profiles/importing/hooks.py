"""What higher apps do with the profiles an import wrote, in the same transaction and set-based.

An app registers an `ImportHook` under a name in its AppConfig.ready(); an import whose
`Options.extra` has that name calls it after the profiles are written, with a temp table
(id, email, phone: the values as written) of every profile the file named (created, updated or
unchanged; in "add only" mode, the created ones). The hook reads the table with SQL, never a row at a time, and reports its counts
in `result.extra[name]`.

A hook may also offer a UI (the import's mapping step shows its `template` with its `form`),
a result section (`result_template`, given what it reported), and a command-line option
(`manage.py import_profiles --<name> TEXT`, parsed by `parse_cli`). Profiles never import the
higher app: everything comes through the registered hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from profiles.importing.report import Result
from profiles.models import ProfileDatabase


class HookForm(Protocol):
    """A hook's form on the mapping step: a Django form whose `options()` (after is_valid) is the
    hook's Options.extra entry, or None when the person chose not to use it."""

    def is_valid(self) -> bool: ...

    def options(self) -> Any: ...


@dataclass(frozen=True)
class ImportHook:
    # check(database, options) -> problems (empty: it can run); options is Options.extra[name]
    check: Callable[[ProfileDatabase, Any], list[str]]
    # run(database=, options=, ids_table=, result=, source=, actor_label=) -> None
    run: Callable[..., None]
    label: str = ""
    # form(database, data, initial options) -> HookForm; shown on the mapping step with `template`
    form: Callable[[ProfileDatabase, Any, Any], HookForm] | None = None
    template: str = ""
    # shows ProfileImport.extra_results[name] (as `hook_result`) on the import's page
    result_template: str = ""
    # parse_cli(database, text) -> options; raises ValueError with a message for the command line
    parse_cli: Callable[[ProfileDatabase, str], Any] | None = None
    cli_help: str = ""


IMPORT_HOOKS: dict[str, ImportHook] = {}


def check_extra(database: ProfileDatabase, extra: dict[str, Any]) -> list[str]:
    problems = []
    for name, opts in extra.items():
        hook = IMPORT_HOOKS.get(name)
        if hook is None:
            problems.append(f"Unknown import option {name!r}.")
        else:
            problems += hook.check(database, opts)
    return problems


def run_hooks(*, database: ProfileDatabase, extra: dict[str, Any], ids_table: str, result: Result, source: str,
              actor_label: str) -> None:
    for name, opts in extra.items():
        IMPORT_HOOKS[name].run(database=database, options=opts, ids_table=ids_table, result=result, source=source,
                               actor_label=actor_label)


def hook_forms(database: ProfileDatabase, data: Any = None, extra: dict[str, Any] | None = None) -> list[tuple[str, ImportHook, HookForm]]:
    """(name, hook, form) for every hook with a UI; `extra` (the stored options) fills them in."""
    extra = extra or {}
    return [(name, hook, hook.form(database, data, extra.get(name))) for name, hook in IMPORT_HOOKS.items() if hook.form]


def hook_results(extra_results: dict[str, Any]) -> list[tuple[ImportHook, Any]]:
    """(hook, what it reported) for the import's page, for hooks that show a result."""
    return [(IMPORT_HOOKS[name], value) for name, value in (extra_results or {}).items()
            if name in IMPORT_HOOKS and IMPORT_HOOKS[name].result_template]
