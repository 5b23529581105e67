"""Export and import of a scenario as JSON.

The document (`FORMAT`, `FORMAT_VERSION` 1):

    {"format": "cdp.scenario", "format_version": 1, "exported_at": ISO,
     "name", "description", "reentry", "goal", "step_limit",
     "database": {"id", "slug", "name"}, "graph": {"version": N, "state": "draft|published"},
     "steps": [{"key", "kind", "title", "config", "col", "row"}],
     "transitions": [{"source", "exit", "target"}],
     "references": {"templates": {"<id>": "<name>"}, "resources": {...}, "segments": {...},
                    "senders": {"<id>": "<from address>"}, "providers": {"<id>": "<name>"}}}

The graph is the draft's when the scenario has one, else the live version's. Configs keep the ids
they name; `references` names each of them, so an import into another account (or after a
template was re-created) maps each id by name: the same id when it exists there under the same
name, else the row of that name, else nothing (the step's field is emptied, the new draft's
note lists what was not found, and validation says what to choose). The condition trees of
"segments" tests are mapped the same way (segment and subscription conditions, and an event
condition's template and resource); validation names what they still miss.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from profiles.models import ProfileDatabase
from scenarios.models import Scenario, ScenarioVersion, Step, Transition
from scenarios.services.editing import clean_graph, graph_write
from scenarios.services.errors import ScenarioError

FORMAT = "cdp.scenario"
FORMAT_VERSION = 1
MAX_NOTE = 300

# Config keys that hold ids, and the reference table that names them.
REF_KEYS = {"template_id": "templates", "resource_id": "resources", "segment_id": "segments",
            "sender_id": "senders", "provider_id": "providers"}


def _tree_refs(tree: Any) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(node, key, reference table) for every id a condition tree names (`segments.conditions`)."""
    if not isinstance(tree, dict):
        return
    kind = tree.get("type")
    if kind == "group":
        for item in tree.get("items") or []:
            yield from _tree_refs(item)
    elif kind == "segment":
        yield tree, "segment", "segments"
    elif kind == "subscription":
        yield tree, "resource", "resources"
    elif kind == "event" and isinstance(tree.get("where"), dict):
        yield tree["where"], "template_id", "templates"
        yield tree["where"], "resource_id", "resources"


def _refs(config: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(holder, key, reference table) for every id a step's config names, condition trees included."""
    for key, table in REF_KEYS.items():
        if key in config:
            yield config, key, table  # type: ignore[misc]
    yield from _tree_refs(config.get("conditions"))


def _graph_version(scenario: Scenario) -> ScenarioVersion | None:
    return (ScenarioVersion.objects.filter(scenario=scenario, state=ScenarioVersion.State.DRAFT).first()
            or scenario.live_version
            or ScenarioVersion.objects.filter(scenario=scenario).order_by("-number").first())


def _ids(configs: list[dict[str, Any]], table: str) -> set[int]:
    out = set()
    for c in configs:
        for holder, key, t in _refs(c):
            v = holder.get(key)
            if t == table and isinstance(v, int) and not isinstance(v, bool):
                out.add(v)
    return out


def _names(account_id: int, table: str, ids: set[int]) -> dict[int, str]:
    """{id: name} of the account's rows of a reference table."""
    from content.models import Template
    from delivery.models import ProviderAccount, Sender
    from resources.models import Resource
    from segments.models import Segment

    if not ids:
        return {}
    if table == "senders":
        return {s.pk: s.from_address for s in Sender.objects.filter(account_id=account_id, pk__in=ids)
                .select_related("domain")}
    model = {"templates": Template, "resources": Resource, "segments": Segment, "providers": ProviderAccount}[table]
    return dict(model.objects.filter(account_id=account_id, pk__in=ids).values_list("pk", "name"))


def scenario_export(scenario: Scenario) -> dict[str, Any]:
    """The scenario as a JSON-ready document (see the module's docstring). Reads only."""
    version = _graph_version(scenario)
    steps = list(Step.objects.filter(version=version).order_by("key", "id")) if version else []
    edges = (list(Transition.objects.filter(version=version).select_related("source", "target")
                  .order_by("source__key", "exit")) if version else [])
    configs = [s.config or {} for s in steps]
    references = {table: {str(pk): name for pk, name in _names(scenario.account_id, table, _ids(configs, table)).items()}
                  for table in REF_KEYS.values()}
    db = scenario.database
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "exported_at": timezone.now().isoformat(),
        "name": scenario.name, "description": scenario.description, "reentry": scenario.reentry,
        "goal": scenario.goal or {}, "step_limit": scenario.step_limit,
        "database": {"id": db.pk, "slug": db.slug, "name": db.name},
        "graph": {"version": version.number if version else None, "state": version.state if version else None},
        "steps": [{"key": s.key, "kind": s.kind, "title": s.title, "config": s.config or {}, "col": s.col, "row": s.row}
                  for s in steps],
        "transitions": [{"source": t.source.key, "exit": t.exit, "target": t.target.key} for t in edges],
        "references": references,
    }


# --- import -----------------------------------------------------------------------------------------


def _target_database(account: Account, database: ProfileDatabase | None, data: Mapping[str, Any]) -> ProfileDatabase:
    if database is not None:
        if database.account_id != account.pk:
            raise ScenarioError({"database": "choose one of this account's databases"})
        return database
    ref = data.get("database") if isinstance(data.get("database"), Mapping) else {}
    qs = ProfileDatabase.objects.filter(account=account)
    found = qs.filter(slug=str(ref.get("slug") or "")).first() or qs.filter(name=str(ref.get("name") or "")).first()
    if found is None:
        only = list(qs[:2])
        if len(only) == 1:
            return only[0]
        raise ScenarioError({"database": "choose the profile database to import the scenario into"})
    return found


class _Mapper:
    """Maps the ids a document's configs name to this account's rows (by id and name, then name)."""

    def __init__(self, account: Account, database: ProfileDatabase, references: Mapping[str, Any]) -> None:
        from content.models import Template
        from delivery.models import ProviderAccount, Sender
        from resources.models import Resource
        from segments.models import Segment

        self.references = {t: (references.get(t) if isinstance(references.get(t), Mapping) else {})
                           for t in REF_KEYS.values()}
        self.rows: dict[str, dict[int, str]] = {
            "templates": dict(Template.objects.filter(account=account).values_list("pk", "name")),
            "resources": dict(Resource.objects.filter(account=account, database=database).values_list("pk", "name")),
            "segments": dict(Segment.objects.filter(account=account, database=database).values_list("pk", "name")),
            "senders": {s.pk: s.from_address for s in Sender.objects.filter(account=account).select_related("domain")},
            "providers": dict(ProviderAccount.objects.filter(account=account).values_list("pk", "name")),
        }
        self.by_name = {t: {name: pk for pk, name in sorted(rows.items(), reverse=True)} for t, rows in self.rows.items()}
        self.missing: list[str] = []

    def map(self, table: str, value: Any, where: str) -> int | None:
        if value is None:
            return None
        name = self.references[table].get(str(value))
        rows = self.rows[table]
        if name is None:  # not named in the document: the id stands if this account has it
            if value in rows:
                return int(value)
            self.missing.append(f"{table[:-1]} #{value} ({where})")
            return None
        if value in rows and rows[value] == name:
            return int(value)
        if name in self.by_name[table]:
            return self.by_name[table][name]
        self.missing.append(f"{table[:-1]} “{name}” ({where})")
        return None


@transaction.atomic
def scenario_import(*, account: Account, data: Any, actor: Actor | None = None,
                    database: ProfileDatabase | None = None, name: str | None = None) -> Scenario:
    """A new draft scenario of `account` from an exported document: the database given, or the
    account's of the export's slug or name (or its only one); references mapped (see the
    module's docstring), unresolved ones emptied and listed in the draft's note. Raises
    ScenarioError naming each fault by its path ("steps[3].config.template_id", "reentry")."""
    from scenarios.services.scenarios import clean_settings, scenario_create

    actor = actor or Actor.system()
    if not isinstance(data, Mapping):
        raise ScenarioError({"__all__": "the document must be a JSON object"})
    if data.get("format") != FORMAT:
        raise ScenarioError({"format": f"not a scenario export (expected \"format\": \"{FORMAT}\")"})
    if data.get("format_version") != FORMAT_VERSION:
        raise ScenarioError({"format_version": f"this version reads format_version {FORMAT_VERSION}"})
    errors: dict[str, str] = {}
    target = None
    try:
        target = _target_database(account, database, data)
    except ScenarioError as exc:
        errors.update(exc.errors)
    values = {"name": name or data.get("name"), "description": data.get("description") or "",
              "reentry": data.get("reentry", Scenario.Reentry.NEVER), "goal": data.get("goal") or {},
              "step_limit": data.get("step_limit", 100)}
    try:
        clean_settings(account, values, actor=actor, creating=True)
    except ScenarioError as exc:
        errors.update(exc.errors)
    try:
        steps, edges = clean_graph(data.get("steps"), data.get("transitions", []))
    except ScenarioError as exc:
        errors.update(exc.errors)
        steps, edges = [], []
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    for i, raw in enumerate(raw_steps):
        config = raw.get("config") if isinstance(raw, Mapping) else None
        for key in REF_KEYS:
            value = config.get(key) if isinstance(config, Mapping) else None
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                errors[f"steps[{i}].config.{key}"] = "an id number or null"
        if isinstance(raw, Mapping) and not raw.get("key"):
            errors[f"steps[{i}].key"] = "an exported step has a key"
    if errors:
        raise ScenarioError(errors)
    assert target is not None
    references = data.get("references") if isinstance(data.get("references"), Mapping) else {}
    mapper = _Mapper(account, target, references)
    for step in steps:
        step["config"] = copy.deepcopy(step["config"])
        for holder, key, table in list(_refs(step["config"])):
            if key in holder and (isinstance(holder[key], int) or holder[key] is None):
                holder[key] = mapper.map(table, holder.get(key), f"{step['key']} {table[:-1]}")
    scenario = scenario_create(account=account, database=target, name=str(values["name"]), actor=actor,
                               reentry=values["reentry"], goal=values["goal"], description=values["description"])
    Scenario.objects.filter(pk=scenario.pk).update(step_limit=values["step_limit"])
    scenario.step_limit = values["step_limit"]
    version = ScenarioVersion.objects.get(scenario=scenario, state=ScenarioVersion.State.DRAFT)
    graph_write(version, steps, edges)
    if mapper.missing:
        note = "Not found in this account: " + ", ".join(mapper.missing)
        version.note = note if len(note) <= MAX_NOTE else note[:MAX_NOTE - 1] + "…"
        version.save(update_fields=["note"])
    audit_log(account=account, actor=actor, verb="scenario.imported", target=scenario,
              data={"steps": len(steps), "missing": mapper.missing[:20]})
    return scenario
