"""Template, version and fragment services; selectors."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from accounts.access import Actor
from accounts.models import AuditEvent
from content import selectors
from content.models import Fragment, Template, TemplateVersion
from content.services import (
    ContentError,
    fragment_delete,
    fragment_save,
    template_archive,
    template_create,
    template_delete,
    template_duplicate,
    template_update,
    template_version_restore,
    template_version_save,
)
from content.tests.core_fixtures import SYSTEM
from profiles.services import database_create

EMAIL = {"subject": "Hi {{ profile.first_name }}", "html": '<p>Hi</p><a href="{{ links.unsubscribe }}">u</a>'}


@pytest.fixture
def actor(alice) -> Actor:
    return Actor(user=alice)


@pytest.fixture
def welcome(acme, actor) -> Template:
    return template_create(account=acme, name="Welcome", kind="marketing", actor=actor)


def verbs(account) -> list[str]:
    return list(AuditEvent.objects.filter(account=account).order_by("id").values_list("verb", flat=True))


# --- templates ---------------------------------------------------------------------------------------


def test_it_creates_a_template_and_audits_it(acme, alice, actor) -> None:
    db = database_create(account=acme, name="Shop", actor=SYSTEM)
    t = template_create(account=acme, name="  Spring   sale ", kind="transactional", actor=actor, database=db.pk,
                        description="d")
    assert (t.name, t.kind, t.database, t.created_by, t.description) == ("Spring sale", "transactional", db, alice, "d")
    assert verbs(acme)[-1] == "template.created"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"kind": "spam"}, "kind"), ({"database": 999999}, "database"),
])
def test_it_refuses_bad_template_fields(acme, actor, kwargs, field) -> None:
    values = {"name": "T", "kind": "marketing", **kwargs}
    with pytest.raises(ContentError) as exc:
        template_create(account=acme, actor=actor, **values)
    assert field in exc.value.message_dict
    assert isinstance(exc.value, ValidationError)


def test_names_are_unique_per_account(acme, globex, actor, welcome) -> None:
    with pytest.raises(ContentError) as exc:
        template_create(account=acme, name="Welcome", kind="marketing", actor=actor)
    assert exc.value.part == "name"
    assert template_create(account=globex, name="Welcome", kind="marketing", actor=SYSTEM).account == globex


def test_another_accounts_database_cannot_be_used(acme, globex, actor) -> None:
    other = database_create(account=globex, name="Theirs", actor=SYSTEM)
    with pytest.raises(ContentError) as exc:
        template_create(account=acme, name="T", kind="marketing", actor=actor, database=other)
    assert exc.value.part == "database"


def test_it_updates_archives_and_deletes(acme, actor, welcome) -> None:
    template_update(template=welcome, actor=actor, name="Hello", kind="transactional")
    welcome.refresh_from_db()
    assert (welcome.name, welcome.kind) == ("Hello", "transactional")
    with pytest.raises(ContentError):
        template_update(template=welcome, actor=actor, account=None)
    template_archive(template=welcome, actor=actor)
    assert Template.objects.get(pk=welcome.pk).is_archived
    assert list(selectors.template_list(account=acme)) == []
    assert list(selectors.template_list(account=acme, include_archived=True)) == [welcome]
    template_archive(template=welcome, actor=actor, archived=False)
    template_version_save(template=welcome, channel="sms", data={"text": "x"}, actor=actor)
    template_delete(template=welcome, actor=actor)
    assert not Template.objects.filter(pk=welcome.pk).exists()
    assert not TemplateVersion.objects.filter(template_id=welcome.pk).exists()
    assert verbs(acme)[-5:] == ["template.updated", "template.archived", "template.restored",
                                "template.version_saved", "template.deleted"]


def test_it_duplicates_the_current_versions(acme, actor, welcome) -> None:
    template_version_save(template=welcome, channel="email", data=EMAIL, actor=actor)
    template_version_save(template=welcome, channel="sms", data={"text": "one"}, actor=actor)
    template_version_save(template=welcome, channel="sms", data={"text": "two"}, actor=actor)
    copy = template_duplicate(template=welcome, actor=actor)
    again = template_duplicate(template=welcome, actor=actor)
    assert (copy.name, again.name) == ("Welcome (copy)", "Welcome (copy) 2")
    current = selectors.current_versions(copy)
    assert list(current) == ["email", "sms"]
    assert current["sms"].data == {"text": "two"} and current["sms"].number == 1


# --- versions ------------------------------------------------------------------------------------------


def test_each_save_is_a_new_numbered_current_version(acme, alice, actor, welcome) -> None:
    v1 = template_version_save(template=welcome, channel="email", data=EMAIL, actor=actor, note="first")
    v2 = template_version_save(template=welcome, channel="email", data={**EMAIL, "subject": "Two"}, actor=actor)
    s1 = template_version_save(template=welcome, channel="sms", data={"text": "hi"}, actor=actor)
    v1.refresh_from_db()
    assert (v1.number, v2.number, s1.number) == (1, 2, 1)
    assert (v1.is_current, v2.is_current, s1.is_current) == (False, True, True)
    assert v1.note == "first" and v1.created_by == alice and v1.account == acme
    assert set(v2.compiled) >= {"subject", "preheader", "html", "text"}
    assert v2.size == len(v2.compiled["html"].encode())
    assert [v.number for v in selectors.versions(welcome, "email")] == [2, 1]
    assert selectors.current_versions(welcome) == {"email": v2, "sms": s1}
    assert verbs(acme).count("template.version_saved") == 3


def test_unknown_parts_are_dropped_and_the_data_kept_as_written(actor, welcome) -> None:
    v = template_version_save(template=welcome, channel="sms", data={"text": "x", "html": "<p>no</p>", "evil": 1},
                              actor=actor)
    assert v.data == {"text": "x"}


@pytest.mark.parametrize(("channel", "data", "part"), [
    ("fax", {}, "channel"),
    ("email", {"subject": "s"}, "html"),
    ("email", {"html": "<p>x</p>"}, "subject"),
    ("email", {"subject": "s", "html": "x" * 256_001}, "html"),
    ("sms", {"text": "x" * 4_001}, "text"),
    ("sms", {"text": ["not", "text"]}, "text"),
    ("webpush", {"title": "t"}, "body"),
    ("telegram", {"text": "t", "parse_mode": "Markdown"}, "parse_mode"),
    ("telegram", {"text": "t", "buttons": [[{"text": "no url"}]]}, "buttons[0][0]"),
    ("telegram", {"text": "t", "buttons": "nope"}, "buttons"),
    ("email", "not a dict", "data"),
])
def test_it_refuses_invalid_parts(actor, welcome, channel, data, part) -> None:
    with pytest.raises(ContentError) as exc:
        template_version_save(template=welcome, channel=channel, data=data, actor=actor)
    assert part in exc.value.message_dict
    assert not TemplateVersion.objects.filter(template=welcome).exists()


def test_syntax_errors_name_every_part_and_line(actor, welcome) -> None:
    with pytest.raises(ContentError) as exc:
        template_version_save(template=welcome, channel="email", actor=actor, data={
            "subject": "Hi {{ profile.first_name", "html": "<p>ok</p>\n<p>{% for x in y %}</p>\n\n"})
    errors = {(part, line) for part, line, _ in exc.value.errors}
    assert ("subject", 1) in errors
    assert any(part == "html" for part, _ in errors)
    assert exc.value.part == "subject" and exc.value.line == 1
    assert exc.value.message_dict["subject"][0].startswith("line 1: ")


def test_refused_constructs_and_missing_fragments_are_refused_at_save(acme, globex, actor, welcome) -> None:
    Fragment.objects.create(account=globex, key="theirs", name="Theirs", html="x")
    for source, message, line in [
        ("a\n{{ ''.__class__ }}", "access to attribute '__class__' is not allowed", 2),
        ('a\nb\n{% include "theirs" %}', "no fragment named 'theirs'", 3),
        ('{% include "/etc/passwd" %}', "no fragment named '/etc/passwd'", 1),
    ]:
        with pytest.raises(ContentError) as exc:
            template_version_save(template=welcome, channel="sms", data={"text": source}, actor=actor)
        assert (exc.value.part, exc.value.line, exc.value.message) == ("text", line, message)


def test_lint_messages_are_stored_not_refused(actor, welcome) -> None:
    v = template_version_save(template=welcome, channel="email", data={"subject": "s", "html": "<p>{{ nope }}</p>"},
                              actor=actor)
    assert {m["code"] for m in v.lint} == {"unknown-variable", "no-unsubscribe"}
    assert [m["code"] for m in v.lint_errors] == ["no-unsubscribe"]


def test_a_footer_fragment_satisfies_the_unsubscribe_lint(acme, actor, welcome) -> None:
    fragment_save(account=acme, key="footer", name="Footer", html='<a href="{{ links.unsubscribe }}">u</a>', actor=actor)
    v = template_version_save(template=welcome, channel="email", data={"subject": "s", "html": '{% include "footer" %}'},
                              actor=actor)
    assert v.lint == []


def test_restore_makes_a_new_current_version_with_the_old_data(acme, actor, welcome) -> None:
    v1 = template_version_save(template=welcome, channel="sms", data={"text": "one"}, actor=actor)
    template_version_save(template=welcome, channel="sms", data={"text": "two"}, actor=actor)
    v3 = template_version_restore(version=v1, actor=actor)
    assert (v3.number, v3.data, v3.is_current, v3.restored_from, v3.note) == (3, {"text": "one"}, True, v1,
                                                                              "Restored from v1")
    v1.refresh_from_db()
    assert not v1.is_current and v1.data == {"text": "one"}
    assert TemplateVersion.objects.filter(template=welcome, channel="sms", is_current=True).count() == 1
    assert "template.version_restored" in verbs(acme)


# --- fragments -------------------------------------------------------------------------------------------


def test_it_saves_fragments_with_validated_keys(acme, globex, actor) -> None:
    f = fragment_save(account=acme, key="Footer", name="", html="<p>f</p>", actor=actor)
    assert (f.key, f.name) == ("footer", "footer")
    assert fragment_save(account=globex, key="footer", name="F", html="x", actor=SYSTEM).account == globex
    for kwargs, part in [
        ({"key": "bad key"}, "key"), ({"key": "footer"}, "key"), ({"html": "", "text": ""}, "html"),
        ({"html": "{% if %}"}, "html"), ({"html": '{% include "nope" %}'}, "html"), ({"html": '{% include "x" %}'}, "html"),
        ({"html": "ok", "text": "{{ x"}, "text"),
    ]:
        values = {"key": "x", "name": "X", "html": "<p>x</p>", **kwargs}
        with pytest.raises(ContentError) as exc:
            fragment_save(account=acme, actor=actor, **values)
        assert part in exc.value.message_dict, kwargs


def test_a_fragment_in_use_cannot_be_deleted_or_renamed(acme, actor, welcome) -> None:
    footer = fragment_save(account=acme, key="footer", name="Footer", html="<p>f</p>", actor=actor)
    template_version_save(template=welcome, channel="email",
                          data={"subject": "s", "html": '<p>x</p>{% include "footer" %}'}, actor=actor)
    assert selectors.fragment_usage(footer) == [welcome]
    with pytest.raises(ContentError) as exc:
        fragment_delete(fragment=footer, actor=actor)
    assert "“Welcome”" in exc.value.message
    with pytest.raises(ContentError):
        fragment_save(account=acme, key="renamed", name="Footer", html="<p>f</p>", actor=actor, fragment=footer)
    # Once no current version includes it, it goes.
    template_version_save(template=welcome, channel="email", data={"subject": "s", "html": "<p>x</p>"}, actor=actor)
    fragment_delete(fragment=footer, actor=actor)
    assert not Fragment.objects.filter(pk=footer.pk).exists()
    assert {"fragment.created", "fragment.deleted"} <= set(verbs(acme))


# --- selectors ---------------------------------------------------------------------------------------------


def test_selectors_are_scoped_to_the_account(acme, globex, actor, welcome) -> None:
    theirs = template_create(account=globex, name="Theirs", kind="marketing", actor=SYSTEM)
    v = template_version_save(template=theirs, channel="sms", data={"text": "x"}, actor=SYSTEM)
    f = fragment_save(account=globex, key="f", name="F", html="x", actor=SYSTEM)
    assert selectors.template_get(account=acme, pk=welcome.pk) == welcome
    for call in (lambda: selectors.template_get(account=acme, pk=theirs.pk),
                 lambda: selectors.version_get(account=acme, pk=v.pk),
                 lambda: selectors.fragment_get(account=acme, pk=f.pk)):
        with pytest.raises(Http404):
            call()
    assert list(selectors.template_list(account=acme)) == [welcome]
    assert list(selectors.fragment_list(account=acme)) == []


def test_template_list_filters_by_search_and_channel(acme, actor, welcome) -> None:
    other = template_create(account=acme, name="Receipt", kind="transactional", actor=actor)
    template_version_save(template=other, channel="sms", data={"text": "x"}, actor=actor)
    assert list(selectors.template_list(account=acme, search="rece")) == [other]
    assert list(selectors.template_list(account=acme, channel="sms")) == [other]
    assert list(selectors.template_list(account=acme)) == [other, welcome]


def test_preview_profiles_come_from_the_templates_database(acme, actor) -> None:
    from profiles.services import profile_create

    db = database_create(account=acme, name="Shop", actor=SYSTEM)
    other_db = database_create(account=acme, name="Other", actor=SYSTEM)
    p = profile_create(database=db, values={"email": "olivia@example.com", "first_name": "Olivia"}, actor=SYSTEM)
    profile_create(database=other_db, values={"email": "x@example.com"}, actor=SYSTEM)
    t = template_create(account=acme, name="T", kind="marketing", actor=actor, database=db)
    assert list(selectors.preview_profiles(template=t)) == [p]
    assert list(selectors.preview_profiles(template=t, search="oli")) == [p]
    assert list(selectors.preview_profiles(template=t, search="zzz")) == []
