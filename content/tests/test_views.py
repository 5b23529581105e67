"""The template pages around the editor: the list (search, channel filter, query count), a new
template, its settings, archive / duplicate / delete, and fragments; who may do what, and another
account's template or fragment is a 404 on every route."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.access import Actor
from content import services
from content.models import Fragment, Template, TemplateVersion
from profiles.services import database_create

SYSTEM = Actor.system()
TABLE = {"HX-Request": "true", "HX-Target": "templates"}
EMAIL = {"subject": "Hello {{ profile.first_name }}", "preheader": "Our news",
         "html": '<p>Hi {{ profile.first_name }}</p><p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>'}


@pytest.fixture
def welcome(acme, shop_db) -> Template:
    t = services.template_create(account=acme, name="Welcome", database=shop_db, kind="marketing", actor=SYSTEM)
    services.template_version_save(template=t, channel="email", data=EMAIL, actor=SYSTEM)
    services.template_version_save(template=t, channel="sms", data={"text": "Hi {{ profile.first_name }}"},
                                   actor=SYSTEM)
    return t


@pytest.fixture
def receipt(acme) -> Template:
    return services.template_create(account=acme, name="Order receipt", kind="transactional", actor=SYSTEM)


@pytest.fixture
def footer(acme) -> Fragment:
    return services.fragment_save(account=acme, fragment=None, key="footer", name="Footer",
                                  html="<p>Acme Inc.</p>", text="Acme Inc.", actor=SYSTEM)


@pytest.fixture
def globex_template(globex) -> Template:
    t = services.template_create(account=globex, name="Globex hello", kind="marketing", actor=SYSTEM)
    services.template_version_save(template=t, channel="email", data=EMAIL, actor=SYSTEM)
    return t


# --- the list ----------------------------------------------------------------------------------------


def test_it_lists_templates_with_their_channels_kind_and_database(login, alice, welcome, receipt):
    r = login(alice).get(reverse("content:template_list"))
    assert r.status_code == 200
    html = r.content.decode()
    assert "Welcome" in html and "Order receipt" in html
    row = html[html.index(f'data-template="{welcome.pk}"'):]
    row = row[: row.index("</tr>")]
    assert 'data-channel="email"' in row and 'data-channel="sms"' in row
    assert 'data-channel="telegram"' not in row
    assert "Shop customers" in row and "Marketing" in row
    assert 'data-testid="new-template"' in html


def test_it_filters_the_list_by_channel_and_searches_by_name(login, alice, welcome, receipt):
    client = login(alice)
    by_channel = client.get(reverse("content:template_list"), {"channel": "sms"}).content.decode()
    assert "Welcome" in by_channel and "Order receipt" not in by_channel
    by_name = client.get(reverse("content:template_list"), {"q": "receipt"}).content.decode()
    assert "Order receipt" in by_name and "Welcome" not in by_name


def test_the_list_answers_htmx_with_the_table_only(login, alice, welcome):
    r = login(alice).get(reverse("content:template_list"), {"q": "wel"}, headers=TABLE)
    html = r.content.decode()
    assert 'id="templates"' in html and "Welcome" in html
    assert "<html" not in html


def test_the_list_query_count_does_not_grow_with_the_number_of_templates(
        login, alice, acme, shop_db, django_assert_max_num_queries):
    for n in range(30):
        t = services.template_create(account=acme, name=f"T{n}", database=shop_db, kind="marketing", actor=SYSTEM)
        services.template_version_save(template=t, channel="sms", data={"text": "Hi"}, actor=SYSTEM)
    client = login(alice)
    with django_assert_max_num_queries(10):
        r = client.get(reverse("content:template_list"))
    assert r.content.decode().count("data-template=") == 25


def test_the_empty_list_invites_a_new_template(login, alice):
    html = login(alice).get(reverse("content:template_list")).content.decode()
    assert "No templates yet" in html and reverse("content:template_create") in html


def test_archived_templates_leave_the_list_but_show_under_the_archived_filter(login, alice, welcome):
    services.template_archive(template=welcome, actor=SYSTEM, archived=True)
    client = login(alice)
    assert "Welcome" not in client.get(reverse("content:template_list")).content.decode()
    assert "Welcome" in client.get(reverse("content:template_list"), {"state": "archived"}).content.decode()


def test_an_analyst_sees_the_list_without_the_new_button(login, bob, welcome):
    html = login(bob).get(reverse("content:template_list")).content.decode()
    assert "Welcome" in html and 'data-testid="new-template"' not in html


def test_the_list_shows_only_the_current_accounts_templates(login, charlie, welcome, globex_template):
    html = login(charlie).get(reverse("content:template_list")).content.decode()
    assert "Globex hello" in html and "Welcome" not in html


# --- new template and settings ------------------------------------------------------------------------


def test_a_marketer_creates_a_template_and_lands_in_its_editor(login, alice, acme, shop_db):
    r = login(alice).post(reverse("content:template_create"), {
        "name": "Spring sale", "kind": "marketing", "database": shop_db.pk, "description": "April"})
    t = Template.objects.get(account=acme, name="Spring sale")
    assert r.status_code == 302 and r["Location"] == t.get_absolute_url()
    assert t.database == shop_db and t.description == "April"


def test_a_new_template_needs_a_name(login, alice):
    r = login(alice).post(reverse("content:template_create"), {"name": "", "kind": "marketing"})
    assert r.status_code == 400 and "This field is required" in r.content.decode()


def test_a_template_name_is_unique_in_the_account(login, alice, welcome):
    r = login(alice).post(reverse("content:template_create"), {"name": "Welcome", "kind": "marketing"})
    assert r.status_code == 400
    assert Template.objects.filter(name="Welcome").count() == 1


def test_another_accounts_database_cannot_be_chosen(login, alice, globex):
    theirs = database_create(account=globex, name="Theirs", actor=SYSTEM)
    r = login(alice).post(reverse("content:template_create"), {"name": "X", "kind": "marketing",
                                                                "database": theirs.pk})
    assert r.status_code == 400 and not Template.objects.filter(name="X").exists()


def test_an_analyst_cannot_create_templates(login, bob):
    assert login(bob).get(reverse("content:template_create")).status_code == 403
    assert login(bob).post(reverse("content:template_create"), {"name": "X", "kind": "marketing"}).status_code == 403


def test_settings_change_the_name_and_kind(login, alice, welcome):
    r = login(alice).post(reverse("content:template_settings", args=[welcome.pk]),
                          {"name": "Welcome 2", "kind": "transactional", "description": ""})
    assert r.status_code == 302
    welcome.refresh_from_db()
    assert welcome.name == "Welcome 2" and welcome.kind == "transactional"


def test_an_analyst_reads_the_settings_but_cannot_save_them(login, bob, welcome):
    client = login(bob)
    page = client.get(reverse("content:template_settings", args=[welcome.pk])).content.decode()
    assert "disabled" in page and 'data-testid="save-template"' not in page
    r = client.post(reverse("content:template_settings", args=[welcome.pk]), {"name": "Hacked", "kind": "marketing"})
    assert r.status_code == 302
    welcome.refresh_from_db()
    assert welcome.name == "Welcome"


# --- archive, duplicate, delete -------------------------------------------------------------------------


def test_archive_and_bring_back(login, alice, welcome):
    client = login(alice)
    client.post(reverse("content:template_archive", args=[welcome.pk]))
    welcome.refresh_from_db()
    assert welcome.archived_at is not None
    client.post(reverse("content:template_archive", args=[welcome.pk]), {"restore": "1"})
    welcome.refresh_from_db()
    assert welcome.archived_at is None


def test_duplicate_copies_the_current_versions_into_a_new_template(login, alice, welcome):
    r = login(alice).post(reverse("content:template_duplicate", args=[welcome.pk]))
    copy = Template.objects.exclude(pk=welcome.pk).get(account=welcome.account)
    assert r.status_code == 302 and r["Location"] == copy.get_absolute_url()
    assert set(TemplateVersion.objects.filter(template=copy, is_current=True).values_list("channel", flat=True)) \
        == {"email", "sms"}


def test_delete_asks_for_the_name_then_deletes(login, alice, welcome):
    client = login(alice)
    assert client.get(reverse("content:template_delete", args=[welcome.pk])).status_code == 200
    wrong = client.post(reverse("content:template_delete", args=[welcome.pk]), {"confirm": "welcome"})
    assert wrong.status_code == 400 and Template.objects.filter(pk=welcome.pk).exists()
    r = client.post(reverse("content:template_delete", args=[welcome.pk]), {"confirm": "Welcome"})
    assert r.status_code == 302 and not Template.objects.filter(pk=welcome.pk).exists()


@pytest.mark.parametrize("name", ["content:template_archive", "content:template_duplicate", "content:template_delete"])
def test_an_analyst_cannot_archive_duplicate_or_delete(login, bob, welcome, name):
    assert login(bob).post(reverse(name, args=[welcome.pk]), {"confirm": "Welcome"}).status_code == 403
    assert Template.objects.filter(account=welcome.account).count() == 1


# --- fragments --------------------------------------------------------------------------------------------


def test_it_lists_fragments(login, bob, footer):
    html = login(bob).get(reverse("content:fragment_list")).content.decode()
    assert "footer" in html and "Footer" in html and 'data-testid="new-fragment"' not in html


def test_a_marketer_creates_and_edits_a_fragment(login, alice, acme):
    client = login(alice)
    r = client.post(reverse("content:fragment_create"), {"key": "header", "name": "Header", "html": "<h1>Acme</h1>",
                                                          "text": ""})
    assert r.status_code == 302
    frag = Fragment.objects.get(account=acme, key="header")
    r = client.post(reverse("content:fragment_edit", args=[frag.pk]),
                    {"key": "header", "name": "Top", "html": "<h1>Acme!</h1>", "text": "Acme"})
    assert r.status_code == 302
    frag.refresh_from_db()
    assert frag.name == "Top" and frag.html == "<h1>Acme!</h1>"


def test_a_fragment_key_must_be_a_slug(login, alice):
    r = login(alice).post(reverse("content:fragment_create"), {"key": "my footer!", "name": "F", "html": "x"})
    assert r.status_code == 400 and not Fragment.objects.exists()


def test_deleting_a_fragment_in_use_is_refused_naming_the_template(login, alice, acme, footer):
    t = services.template_create(account=acme, name="Uses footer", kind="transactional", actor=SYSTEM)
    services.template_version_save(template=t, channel="email", actor=SYSTEM, data={
        "subject": "Hi", "html": '<p>Hi</p>{% include "footer" %}'})
    r = login(alice).post(reverse("content:fragment_delete", args=[footer.pk]))
    assert r.status_code == 409
    assert "Uses footer" in r.content.decode()
    assert Fragment.objects.filter(pk=footer.pk).exists()


def test_an_unused_fragment_is_deleted(login, alice, footer):
    r = login(alice).post(reverse("content:fragment_delete", args=[footer.pk]))
    assert r.status_code == 302 and not Fragment.objects.filter(pk=footer.pk).exists()


def test_an_analyst_reads_a_fragment_but_cannot_change_or_delete_it(login, bob, footer):
    client = login(bob)
    page = client.get(reverse("content:fragment_edit", args=[footer.pk])).content.decode()
    assert "Acme Inc." in page and 'data-testid="save-fragment"' not in page
    client.post(reverse("content:fragment_edit", args=[footer.pk]), {"key": "footer", "name": "X", "html": "x"})
    footer.refresh_from_db()
    assert footer.name == "Footer"
    assert client.post(reverse("content:fragment_delete", args=[footer.pk])).status_code == 403


# --- another account -----------------------------------------------------------------------------------------


TEMPLATE_ROUTES = [
    ("content:template_detail", "get"), ("content:template_detail", "post"), ("content:template_check", "post"),
    ("content:template_profiles", "get"), ("content:template_preview", "get"), ("content:template_preview", "post"),
    ("content:template_settings", "get"), ("content:template_settings", "post"), ("content:template_archive", "post"),
    ("content:template_duplicate", "post"), ("content:template_delete", "get"), ("content:template_delete", "post"),
    ("content:template_versions", "get"), ("content:version_compare", "get"), ("content:template_links", "get"),
    ("content:template_test_send", "post"),
]


@pytest.mark.parametrize(("name", "method"), TEMPLATE_ROUTES)
def test_another_accounts_template_is_a_404_on_every_route(login, charlie, welcome, name, method):
    r = getattr(login(charlie), method)(reverse(name, args=[welcome.pk]), {"channel": "email", "confirm": "Welcome"})
    assert r.status_code == 404


def test_another_accounts_version_cannot_be_restored(login, charlie, welcome, globex_template):
    version = TemplateVersion.objects.get(template=welcome, channel="email")
    client = login(charlie)
    assert client.post(reverse("content:version_restore", args=[welcome.pk, version.pk])).status_code == 404
    # Their own template with our version id: still a 404 (the version must be the template's).
    assert client.post(reverse("content:version_restore", args=[globex_template.pk, version.pk])).status_code == 404
    assert TemplateVersion.objects.filter(template=welcome, channel="email").count() == 1


def test_another_accounts_versions_cannot_be_compared(login, charlie, welcome, globex_template):
    mine = TemplateVersion.objects.get(template=globex_template, channel="email")
    theirs = TemplateVersion.objects.get(template=welcome, channel="email")
    r = login(charlie).get(reverse("content:version_compare", args=[globex_template.pk]),
                           {"a": theirs.pk, "b": mine.pk})
    assert r.status_code == 404


@pytest.mark.parametrize(("name", "method"), [("content:fragment_edit", "get"), ("content:fragment_edit", "post"),
                                              ("content:fragment_delete", "get"), ("content:fragment_delete", "post")])
def test_another_accounts_fragment_is_a_404(login, charlie, footer, name, method):
    r = getattr(login(charlie), method)(reverse(name, args=[footer.pk]), {"key": "x", "name": "x"})
    assert r.status_code == 404
    assert Fragment.objects.filter(pk=footer.pk, name="Footer").exists()
