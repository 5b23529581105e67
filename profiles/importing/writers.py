"""Applying staged rows set-based: PostgreSQL (COPY, dedupe, UPDATE .. FROM, INSERT .. SELECT) and SQLite."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from profiles.fieldtypes import (
    FieldType,
)
from profiles.importing.hooks import run_hooks
from profiles.importing.mapping import Plan
from profiles.importing.report import ErrorReport, Result
from profiles.models import (
    WRITABLE_SYSTEM_FIELDS,
    ErasedIdentity,
    Field,
    Profile,
    ProfileChange,
)
from profiles.services import apply_values, erased_hash, lock_database_writes

# --- writers -------------------------------------------------------------------------------------

# Columns of profiles_profile that system fields live in; NOT NULL text columns hold "" for empty.
_NULLABLE_COLUMNS = ("email", "phone", "birthday")


class Writer:
    """Stages validated rows ([row_no, value per plan column]) and applies them at `finish`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.staged = 0
        self.suffix = secrets.token_hex(5)

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (row_no, value per plan column), converted and valid."""
        raise NotImplementedError

    def finish(self, result: Result, errors: ErrorReport, *, source: str, actor_label: str) -> None:
        raise NotImplementedError

    stg: str  # the staging table each writer creates

    def close(self) -> None:
        """Drop the staging table (idempotent)."""
        try:
            with connection.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {self.stg}")
        except Exception:  # noqa: S110 - a broken transaction: the temp table dies with it
            pass

    def _secondary(self) -> list[tuple[int, Field]]:
        """Mapped unique fields other than the match key: a value another profile holds is an error."""
        return [(i, c.field) for i, c in enumerate(self.plan.columns) if c.field.unique and i != self.plan.key]

    def _required_for_new(self) -> list[Field]:
        return [f for f in self.plan.sch.fields.values() if f.required and f.default is None and f.name != self.plan.options.match_key]

    def _defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.plan.sch.fields.values() if f.default is not None and not f.read_only}


def _pg_type(f: Field) -> str:
    if f.name == "birthday":
        return "date"
    if f.is_system:
        return "text"
    return {FieldType.INTEGER: "bigint", FieldType.DECIMAL: "numeric", FieldType.BOOLEAN: "boolean",
            FieldType.LIST: "jsonb", FieldType.JSON: "jsonb"}.get(f.type, "text")


class _Clock:
    """clock("phase") adds the seconds since the last call to phases["phase"]."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases, self.last = phases, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


class PostgresWriter(Writer):
    """COPY into a TEMP staging table, then set-based SQL (see the module docstring).

    SQL is built from field names checked against `_NAME_RE` and integer ids; values are parameters.
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.stg, self.err, self.chg, self.mt = (f"imp_{n}_{self.suffix}" for n in ("stg", "err", "chg", "mt"))
        self.types = [_pg_type(c.field) for c in plan.columns]
        self.json_pos = frozenset(i + 1 for i, t in enumerate(self.types) if t == "jsonb")
        cols = ", ".join(f"c{i} {t}" for i, t in enumerate(self.types))
        with connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {self.stg} (row_no bigint NOT NULL, {cols})")
        names = ", ".join(f"c{i}" for i in range(len(self.types)))
        self.copy_sql = f"COPY {self.stg} (row_no, {names}) FROM STDIN"

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        if self.json_pos:
            dumps, pos = json.dumps, self.json_pos
            rows = [tuple(dumps(v, ensure_ascii=False) if i in pos and v is not None else v for i, v in enumerate(r)) for r in rows]
        connection.ensure_connection()
        with connection.connection.cursor() as cur, cur.copy(self.copy_sql) as copy:
            write = copy.write_row
            for r in rows:
                write(r)
        self.staged += len(rows)


    # expressions over p (the stored profile) and s (the staged row) ---------------------------

    def _col(self, name: str) -> str:
        i = next(i for i, c in enumerate(self.plan.columns) if c.field.name == name)
        return f"s.c{i}"

    def _key_match(self, alias: str = "p") -> str:
        key = self.plan.key_field
        db = int(self.plan.database.pk)
        if key.is_system:
            return f"{alias}.database_id = {db} AND {alias}.{key.name} = s.c{self.plan.key}"
        return f"{alias}.database_id = {db} AND ({alias}.data ->> '{key.name}') = s.c{self.plan.key}::text"

    def _value_match(self, i: int, f: Field) -> str:
        db = int(self.plan.database.pk)
        if f.is_system:
            return f"p.database_id = {db} AND p.{f.name} = s.c{i}"
        return f"p.database_id = {db} AND (p.data ->> '{f.name}') = s.c{i}::text"

    def _old_new(self) -> list[tuple[str, str, str, str, str]]:
        """(name, old, new, old shown, new shown) per mapped field but the key."""
        clear = self.plan.options.clear_empty
        out = []
        for i, c in enumerate(self.plan.columns):
            if i == self.plan.key:
                continue
            f, s = c.field, f"s.c{i}"
            if f.is_system:
                old = f"p.{f.name}"
                if f.name in _NULLABLE_COLUMNS:
                    new = s if clear else f"COALESCE({s}, p.{f.name})"
                    show = "to_jsonb({})"
                else:
                    new = f"COALESCE({s}, '')" if clear else f"COALESCE({s}, p.{f.name})"
                    show = "to_jsonb(NULLIF({}, ''))"
                out.append((f.name, old, new, show.format(old), show.format(new)))
            else:
                old = f"(p.data -> '{f.name}')"
                val = s if self.types[i] == "jsonb" else f"to_jsonb({s})"
                new = val if clear else f"COALESCE({val}, {old})"
                out.append((f.name, old, new, old, new))
        return out

    def _custom_object(self) -> str:
        """The staged custom values as one jsonb object (empty cells left out)."""
        scalar, parts = [], []
        for i, c in enumerate(self.plan.columns):
            if c.field.is_system:
                continue
            if self.types[i] == "jsonb":
                parts.append(f"(CASE WHEN s.c{i} IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('{c.field.name}', s.c{i}) END)")
            else:
                scalar.append(f"'{c.field.name}', s.c{i}")
        for n in range(0, len(scalar), 40):  # a function takes at most 100 arguments
            parts.insert(0, f"jsonb_strip_nulls(jsonb_build_object({', '.join(scalar[n:n + 40])}))")
        return " || ".join(parts) if parts else "'{}'::jsonb"

    def _custom_mapped(self) -> list[str]:
        return [c.field.name for i, c in enumerate(self.plan.columns) if not c.field.is_system]

    # the apply --------------------------------------------------------------------------------

    def finish(self, result: Result, errors: ErrorReport, *, source: str, actor_label: str) -> None:
        plan, stg, err = self.plan, self.stg, self.err
        db, opts = plan.database, plan.options
        key = f"s.c{plan.key}"
        clock = _Clock(result.phases)
        with transaction.atomic(), connection.cursor() as cur:
            # Imports into one database take turns; other writers race only on single rows.
            lock_database_writes(db.pk)
            cur.execute("SET LOCAL work_mem = '64MB'")
            cur.execute(f"CREATE TEMP TABLE {err} (row_no bigint, name text, value text, reason text, dup boolean) ON COMMIT DROP")
            # 1. The same key twice: the last row of the file wins.
            label = plan.key_field.label
            cur.execute(
                f"INSERT INTO {err} SELECT s.row_no, %s, {key}::text, 'row ' || d.keep || ' has the same ' || %s || "  # noqa: S608
                f"' further down the file: the last row wins', true FROM {stg} s JOIN (SELECT c{plan.key} AS k, max(row_no) AS keep "
                f"FROM {stg} GROUP BY c{plan.key} HAVING count(*) > 1) d ON {key} = d.k AND s.row_no <> d.keep",
                [plan.key_field.name, label],
            )
            result.duplicates = self._delete(cur, dup=True)
            # 2. Erased people (a salted hash of the match key, as profile_erase stored it).
            if opts.skip_erased and ErasedIdentity.objects.filter(database=db).exists():
                cur.execute(
                    f"DELETE FROM {stg} s USING profiles_erasedidentity e WHERE e.database_id = %s AND e.key_hash = "  # noqa: S608
                    f"encode(sha256(convert_to(%s || {key}::text, 'UTF8')), 'hex')",
                    [db.pk, f"{db.erasure_salt}:{opts.match_key}:"],
                )
                result.skipped_erased = cur.rowcount
            # 3. Unique fields besides the key: not twice in the file, not another profile's value.
            for i, f in self._secondary():
                cur.execute(
                    f"INSERT INTO {err} SELECT s.row_no, %s, s.c{i}::text, 'row ' || d.keep || ' has the same ' || %s || "  # noqa: S608
                    f"' (it must be unique)', false FROM {stg} s JOIN (SELECT c{i} AS v, max(row_no) AS keep FROM {stg} "
                    f"WHERE c{i} IS NOT NULL GROUP BY c{i} HAVING count(*) > 1) d ON s.c{i} = d.v AND s.row_no <> d.keep",
                    [f.name, f.label],
                )
                key_of_p = f"p.{plan.key_field.name}" if plan.key_field.is_system else f"(p.data ->> '{plan.key_field.name}')"
                cur.execute(
                    f"INSERT INTO {err} SELECT s.row_no, %s, s.c{i}::text, 'another profile (#' || p.id || ') already has this ' "  # noqa: S608
                    f"|| %s, false FROM {stg} s JOIN profiles_profile p ON {self._value_match(i, f)} "
                    f"WHERE {key_of_p} IS DISTINCT FROM {key}::text",
                    [f.name, f.label],
                )
            # 4. New profiles need their required fields.
            if opts.mode != "update":
                for f in self._required_for_new():
                    missing = f"{self._col(f.name)} IS NULL" if f.name in opts.mapping.values() else "true"
                    cur.execute(
                        f"INSERT INTO {err} SELECT s.row_no, %s, '', %s, false FROM {stg} s WHERE {missing} "  # noqa: S608
                        f"AND NOT EXISTS (SELECT 1 FROM profiles_profile p WHERE {self._key_match()})",
                        [f.name, f"{f.label} is required for a new profile"],
                    )
            result.failed += self._delete(cur, dup=False)
            clock("checks")
            cur.execute(f"ANALYZE {stg}")
            cur.execute(f"SELECT count(*) FROM {stg}")  # noqa: S608
            remaining = cur.fetchone()[0]
            matched = self._match(cur, result, source, actor_label)
            clock("update")
            if opts.mode != "update":
                self._insert(cur, result)
                clock("insert")
                if opts.mode == "upsert" and remaining - matched - result.created:
                    lost = remaining - matched - result.created
                    result.failed += lost
                    errors.add(None, "", "", f"{lost} new profile(s) were created by someone else while the import ran: run it again")
            if opts.mode == "insert":
                result.skipped_mode = remaining - result.created
            elif opts.mode == "update":
                result.skipped_mode = remaining - matched
            result.skipped = result.skipped_erased + result.skipped_mode
            result.unchanged = matched - result.updated if opts.mode != "insert" else 0
            if opts.extra:
                self._hooks(cur, result, source, actor_label)
                clock("hooks")
            self._report(errors)
        clock("commit")

    def _hooks(self, cur: Any, result: Result, source: str, actor_label: str) -> None:
        """The ids of the profiles the file named, for IMPORT_HOOKS (see profiles.importing.hooks)."""
        ids = f"imp_ids_{self.suffix}"
        only_new = f"WHERE NOT EXISTS (SELECT 1 FROM {self.mt} m WHERE m.row_no = s.row_no)" if self.plan.options.mode == "insert" else ""  # noqa: S608
        # No key and no DISTINCT: the staged keys are unique by now, so are the ids they match.
        cur.execute(f"CREATE TEMP TABLE {ids} (id bigint NOT NULL, email text, phone text) ON COMMIT DROP")
        cur.execute(f"INSERT INTO {ids} SELECT p.id, p.email, p.phone FROM {self.stg} s JOIN profiles_profile p ON {self._key_match()} {only_new}")  # noqa: S608
        cur.execute(f"ANALYZE {ids}")
        run_hooks(database=self.plan.database, extra=self.plan.options.extra, ids_table=ids, result=result, source=source,
                  actor_label=actor_label)

    def _delete(self, cur: Any, *, dup: bool) -> int:
        cur.execute(f"DELETE FROM {self.stg} s USING {self.err} e WHERE e.row_no = s.row_no AND e.dup = %s", [dup])  # noqa: S608
        return cur.rowcount

    def _match(self, cur: Any, result: Result, source: str, actor_label: str) -> int:
        """One join of the staged rows with the stored profiles: the rows that exist go to `mt` (the
        insert leaves them out), the ones that change go to `chg` with their per-field diffs, are
        updated with one UPDATE .. FROM and logged as ProfileChange rows. Returns how many exist."""
        stg, chg, mt, plan = self.stg, self.chg, self.mt, self.plan
        mode = plan.options.mode
        pairs = self._old_new() if mode != "insert" else []
        ctes = []
        if pairs:
            olds = ", ".join(o for _, o, _, _, _ in pairs)
            news = ", ".join(n for _, _, n, _, _ in pairs)
            changed = f"ROW({olds}) IS DISTINCT FROM ROW({news})"
            diff = " || ".join(
                f"(CASE WHEN {o} IS DISTINCT FROM {n} THEN jsonb_build_object('{name}', jsonb_build_array({os}, {ns})) ELSE '{{}}'::jsonb END)"
                for name, o, n, os, ns in pairs
            )
            names = ", ".join(f"c{i}" for i in range(len(plan.columns)))
            staged = ", ".join(f"s.c{i}" for i in range(len(plan.columns)))
            cur.execute(f"CREATE TEMP TABLE {chg} ON COMMIT DROP AS SELECT p.id, NULL::jsonb AS diff, s.* FROM {stg} s, profiles_profile p LIMIT 0")  # noqa: S608
            m = (f"SELECT p.id, s.row_no, {changed} AS changed, {staged}, CASE WHEN {changed} THEN {diff} END AS diff "  # noqa: S608
                 f"FROM {stg} s JOIN profiles_profile p ON {self._key_match()}")
            ctes.append(f"c AS (INSERT INTO {chg} (id, diff, row_no, {names}) SELECT id, diff, row_no, {names} FROM m WHERE changed RETURNING 1)")  # noqa: S608
        else:
            m = f"SELECT p.id, s.row_no FROM {stg} s JOIN profiles_profile p ON {self._key_match()}"  # noqa: S608
        if mode != "update":
            cur.execute(f"CREATE TEMP TABLE {mt} (row_no bigint PRIMARY KEY) ON COMMIT DROP")
            ctes.append(f"k AS (INSERT INTO {mt} SELECT row_no FROM m RETURNING 1)")  # noqa: S608
        cur.execute(f"WITH m AS ({m}){''.join(', ' + c for c in ctes)} SELECT count(*) FROM m")  # noqa: S608
        matched = cur.fetchone()[0]
        if mode != "update":
            cur.execute(f"ANALYZE {mt}")
        if not pairs:
            return matched
        sets = [f"{name} = {n}" for name, _, n, _, _ in pairs if plan.sch.fields[name].is_system]
        custom = self._custom_mapped()
        if custom:
            base = "p.data" if not plan.options.clear_empty else f"(p.data - ARRAY[{', '.join(repr(n) for n in custom)}]::text[])"
            sets.append(f"data = {base} || {self._custom_object()}")
        cur.execute(
            f"WITH u AS (UPDATE profiles_profile p SET {', '.join(sets)}, updated_at = now() FROM {chg} s "  # noqa: S608
            f"WHERE p.id = s.id AND {changed} RETURNING p.id), "
            f"pc AS (INSERT INTO profiles_profilechange (account_id, profile_id, changes, source, actor_label, created_at) "
            f"SELECT %s, s.id, s.diff, %s, %s, now() FROM {chg} s JOIN u ON u.id = s.id RETURNING 1) "
            f"SELECT count(*) FROM u",
            [plan.database.account_id, source[:64], actor_label[:200]],
        )
        result.updated = cur.fetchone()[0]
        return matched

    def _insert(self, cur: Any, result: Result) -> None:
        plan, clear = self.plan, self.plan.options.clear_empty
        mapped = {c.field.name: f"s.c{i}" for i, c in enumerate(plan.columns)}
        defaults = self._defaults()
        values, params = [], []
        for name in WRITABLE_SYSTEM_FIELDS:
            fallback = "NULL" if name in _NULLABLE_COLUMNS else "''"
            if defaults.get(name) is not None and not (clear and name in mapped):
                fallback = "%s"
                params.append(defaults[name])
            if name not in mapped:
                values.append(fallback)
            else:
                values.append(mapped[name] if fallback == "NULL" else f"COALESCE({mapped[name]}, {fallback})")
        custom_defaults = {k: v for k, v in defaults.items() if not plan.sch.fields[k].is_system and not (clear and k in mapped)}
        data = self._custom_object()
        if custom_defaults:
            data = f"%s::jsonb || {data}"
            params.append(json.dumps(custom_defaults))
        # The rows found by `_match` are left out by an anti-join with `mt`, not with the table being
        # filled (whose plan would rest on its statistics: a fresh table makes that quadratic).
        sql = (
            f"INSERT INTO profiles_profile (account_id, database_id, {', '.join(WRITABLE_SYSTEM_FIELDS)}, data, created_at, updated_at) "  # noqa: S608
            f"SELECT {int(plan.database.account_id)}, {int(plan.database.pk)}, {', '.join(values)}, {data}, now(), now() "
            f"FROM {self.stg} s WHERE NOT EXISTS (SELECT 1 FROM {self.mt} m WHERE m.row_no = s.row_no)"
        )
        try:
            # A plain INSERT costs 40% less than ON CONFLICT's speculative insertion ...
            with transaction.atomic():
                cur.execute(sql, params)
        except IntegrityError:
            # ... and is enough unless someone created one of these profiles since `_match`: then
            # those rows are left out (and counted) instead of failing the whole import.
            cur.execute(sql + " ON CONFLICT DO NOTHING", params)
        result.created = cur.rowcount

    def _report(self, errors: ErrorReport) -> None:
        plan = self.plan
        with connection.connection.cursor(name=f"imp_report_{self.suffix}") as cur:
            cur.itersize = 5000
            cur.execute(f"SELECT row_no, name, value, reason FROM {self.err} ORDER BY row_no, name")  # noqa: S608
            for row_no, name, value, reason in cur:
                errors.add(row_no, plan.header_of(name), value, reason)


class _SortedErrors:
    """Error lines kept in a temp table (not memory) and written out in row order by `drain`."""

    def __init__(self, suffix: str) -> None:
        self.table, self.pending = f"imp_err_{suffix}", []
        with connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {self.table} (row_no INTEGER, col TEXT, value TEXT, reason TEXT)")

    def add(self, row: int | None, column: str, value: Any, reason: str) -> None:
        self.pending.append((row, column, None if value is None else str(value), reason))
        if len(self.pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        with connection.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s)", self.pending)  # noqa: S608
        self.pending = []

    def drain(self, errors: ErrorReport) -> None:
        self._flush()
        with connection.cursor() as cur:
            cur.execute(f"SELECT row_no, col, value, reason FROM {self.table} ORDER BY row_no")  # noqa: S608
            while rows := cur.fetchmany(5000):
                for row in rows:
                    errors.add(*row)
            cur.execute(f"DROP TABLE {self.table}")


class SqliteWriter(Writer):
    """The embedded default: a staging table for the file-wide dedupe, then batches applied with
    one lookup query per batch and bulk_create / bulk_update."""

    CHUNK = 2000

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.ids = ""
        self.stg = f"imp_stg_{self.suffix}"
        with connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {self.stg} (row_no INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)")

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        key = self.plan.key + 1
        with connection.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.stg} (row_no, k, v) VALUES (%s, %s, %s)",  # noqa: S608
                [(r[0], str(r[key]), json.dumps(r[1:], ensure_ascii=False)) for r in rows],
            )
        self.staged += len(rows)


    def _take(self, cur: Any, expr: str, name: str, reason: str, errors: _SortedErrors) -> int:
        """Report and drop rows whose `expr` value repeats further down the file."""
        stg = self.stg
        repeated = (
            f"FROM {stg} s JOIN (SELECT {expr.format(stg)} AS x, max(row_no) AS keep FROM {stg} "  # noqa: S608
            f"WHERE {expr.format(stg)} IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d ON {expr.format('s')} = d.x AND s.row_no <> d.keep"
        )
        cur.execute(f"SELECT s.row_no, {expr.format('s')}, d.keep {repeated}")
        header = self.plan.header_of(name)
        while rows := cur.fetchmany(2000):
            for row_no, value, keep in rows:
                errors.add(row_no, header, value, reason.format(keep=keep))
        cur.execute(f"DELETE FROM {stg} WHERE row_no IN (SELECT s.row_no {repeated})")  # noqa: S608
        return cur.rowcount

    def finish(self, result: Result, errors: ErrorReport, *, source: str, actor_label: str) -> None:
        plan = self.plan
        later = _SortedErrors(self.suffix)  # found out of row order here; reported in row order
        self.ids = f"imp_ids_{self.suffix}" if plan.options.extra else ""
        with transaction.atomic(), connection.cursor() as cur:
            if self.ids:
                cur.execute(f"CREATE TEMP TABLE {self.ids} (id INTEGER PRIMARY KEY, email TEXT, phone TEXT)")
            result.duplicates = self._take(
                cur, "{}.k", plan.key_field.name,
                f"row {{keep}} has the same {plan.key_field.label} further down the file: the last row wins", later,
            )
            for i, f in self._secondary():
                result.failed += self._take(cur, f"json_extract({{}}.v, '$[{i}]')", f.name, f"row {{keep}} has the same {f.label} (it must be unique)", later)
            has_erased = plan.options.skip_erased and ErasedIdentity.objects.filter(database=plan.database).exists()
            last = 0
            while True:
                cur.execute(f"SELECT row_no, v FROM {self.stg} WHERE row_no > %s ORDER BY row_no LIMIT %s", [last, self.CHUNK])  # noqa: S608
                chunk = [(r, json.loads(v)) for r, v in cur.fetchall()]
                if not chunk:
                    break
                last = chunk[-1][0]
                self._apply(chunk, result, later, has_erased, source, actor_label)
            later.drain(errors)
            if self.ids:
                run_hooks(database=plan.database, extra=plan.options.extra, ids_table=self.ids, result=result, source=source,
                          actor_label=actor_label)
                cur.execute(f"DROP TABLE {self.ids}")
        result.skipped = result.skipped_erased + result.skipped_mode

    def _lookup(self, name: str, values: list[Any]) -> dict[str, Profile]:
        f = self.plan.sch.fields[name]
        lookup = f"{name}__in" if f.is_system else f"data__{name}__in"
        qs = Profile.objects.filter(database=self.plan.database, **{lookup: values})
        return {str(p.value(name)): p for p in qs}

    def _apply(self, chunk: list[tuple[int, list[Any]]], result: Result, errors: _SortedErrors, has_erased: bool,
               source: str, actor_label: str) -> None:
        plan, opts = self.plan, self.plan.options
        db, kpos = plan.database, plan.key
        names = [c.field.name for c in plan.columns]
        if has_erased:
            hashes = {erased_hash(db, opts.match_key, v[kpos]): r for r, v in chunk}
            erased = set(ErasedIdentity.objects.filter(database=db, key_hash__in=list(hashes)).values_list("key_hash", flat=True))
            result.skipped_erased += len(erased)
            skip = {hashes[h] for h in erased}
            chunk = [(r, v) for r, v in chunk if r not in skip]
        existing = self._lookup(opts.match_key, [v[kpos] for _, v in chunk])
        owners = {i: self._lookup(f.name, [v[i] for _, v in chunk if v[i] is not None]) for i, f in self._secondary()}
        defaults, required = self._defaults(), self._required_for_new()
        now = timezone.now()
        new, changed, changes, named = [], [], [], []
        for row_no, values in chunk:
            key = str(values[kpos])
            profile = existing.get(key)
            conflict = next(((i, o) for i, o in ((i, owners[i].get(str(values[i]))) for i in owners)
                             if o is not None and (profile is None or o.pk != profile.pk)), None)
            if conflict:
                i, other = conflict
                errors.add(row_no, plan.columns[i].header, values[i], f"another profile (#{other.pk}) already has this {plan.columns[i].field.label}")
                result.failed += 1
                continue
            clean = {n: v for n, v in zip(names, values, strict=True) if v is not None or opts.clear_empty}
            if profile is None:
                if opts.mode == "update":
                    result.skipped_mode += 1
                    continue
                profile = Profile(account_id=db.account_id, database=db, created_at=now, updated_at=now)
                apply_values(profile, {**defaults, **clean})
                missing = [f for f in required if profile.value(f.name) in (None, "", [])]
                if missing:
                    for f in missing:
                        errors.add(row_no, plan.header_of(f.name), "", f"{f.label} is required for a new profile")
                    result.failed += 1
                    continue
                new.append(profile)
            elif opts.mode == "insert":
                result.skipped_mode += 1
            else:
                named.append(profile)
                diff = apply_values(profile, clean)
                if not diff:
                    result.unchanged += 1
                    continue
                profile.updated_at = now
                changed.append(profile)
                changes.append(ProfileChange(account_id=db.account_id, profile=profile, changes=diff, source=source[:64],
                                             actor_label=actor_label[:200], created_at=now))
        Profile.objects.bulk_create(new, batch_size=500)
        if changed:
            Profile.objects.bulk_update(changed, [*WRITABLE_SYSTEM_FIELDS, "data", "updated_at"], batch_size=500)
            ProfileChange.objects.bulk_create(changes, batch_size=500)
        result.created += len(new)
        result.updated += len(changed)
        if self.ids:
            with connection.cursor() as cur:
                cur.executemany(f"INSERT OR IGNORE INTO {self.ids} (id, email, phone) VALUES (%s, %s, %s)",  # noqa: S608
                                [(p.pk, p.email, p.phone) for p in [*named, *new]])


