"""What higher apps do with the profiles an import wrote, in the same transaction and set-based.

An app registers an `ImportHook` under a name in its AppConfig.ready(); an import whose
`Options.extra` has that name calls it after the profiles are written, with a temp table of the
ids of every profile the file named (created, updated or unchanged; in "add only" mode, the
created ones). The hook reads the table with SQL, never a row at a time, and reports its counts
in `result.extra[name]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profiles.importing.report import Result
from profiles.models import ProfileDatabase


@dataclass(frozen=True)
class ImportHook:
    # check(database, options) -> problems (empty: it can run); options is Options.extra[name]
    check: Callable[[ProfileDatabase, Any], list[str]]
    # run(database=, options=, ids_table=, result=, source=, actor_label=) -> None
    run: Callable[..., None]


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
