"""The profile pages: list (search, filters, columns), card (edit, history), new, merge, erase."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from accounts.access import Actor
from accounts.models import AuditEvent
from profiles.models import ErasedIdentity, Profile, ProfileChange, ProfileDatabase
from profiles.services import database_create, field_add, profile_create

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    acme.default_phone_region = "DE"
    acme.save()
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    for name, type_, extra in [
        ("city", "string", {"indexed": True}),
        ("loyalty_points", "integer", {}),
        ("score", "decimal", {}),
        ("vip", "boolean", {}),
        ("tier", "enum", {"choices": ["bronze", "silver", "gold"]}),
        ("tags", "list", {}),
        ("since", "date", {}),
        ("last_order", "datetime", {}),
        ("prefs", "json", {}),
        ("notes", "text", {}),
    ]:
        field_add(database=db, name=name, label=name.replace("_", " ").capitalize(), type=type_, actor=SYSTEM, **extra)
    return db


def _p(db: ProfileDatabase, **values) -> Profile:
    return profile_create(database=db, values=values, actor=SYSTEM)


@pytest.fixture
def people(shop) -> dict[str, Profile]:
    return {
        "anna": _p(shop, email="anna.berg@shop.example", first_name="Anna", last_name="Berg", phone="+49 30 12345678",
                   city="Berlin", loyalty_points=120, score="4.5", vip=True, tier="gold", tags="newsletter, app",
                   since="2023-01-15", last_order="2024-05-01T10:30:00+02:00", prefs='{"size": "M"}'),
        "ben": _p(shop, email="ben@shop.example", first_name="Ben", last_name="Annen", city="Hamburg",
                  loyalty_points=15, vip=False, tier="bronze", tags="app", since="2024-03-01"),
        "clara": _p(shop, email="clara@other.example", first_name="Clara", last_name="Stein", phone="+49 40 7654321",
                    tier="silver"),
    }


def _list(client, db, **params):
    return client.get(f"/databases/{db.slug}/", params)


def _ids(response) -> set[int]:
    return {row.pk for row in response.context["table"].rows}


# --- the list: search ----------------------------------------------------------------------------


def test_the_list_shows_the_newest_first_with_the_default_columns(login, bob, shop, people):
    response = _list(login(bob), shop)
    assert response.status_code == 200
    assert [r.pk for r in response.context["table"].rows] == [people["clara"].pk, people["ben"].pk, people["anna"].pk]
    assert [c["label"] for c in response.context["table"].header()] == ["E-mail", "First name", "Last name", "Phone", "Created"]
    html = response.content.decode()
    assert f'href="/databases/{shop.slug}/profiles/{people["anna"].pk}/"' in html
    assert "3 results" in html and response.context["section"] == "profiles"


@pytest.mark.parametrize(
    ("q", "who"),
    [
        ("ANNA.B", set()),  # no "@": a name search, and no name starts with "anna.b"
        ("Anna.Berg@", {"anna"}),  # e-mail prefix, lowercased
        ("ben@shop", {"ben"}),
        ("@shop", set()),  # a prefix, not a substring
        ("+49 (30) 1234-5678", {"anna"}),  # normalised to E.164
        ("040 7654321", {"clara"}),  # read with the account's region (DE)
        ("0301234", set()),  # looks like a phone, is not a valid one: nothing
        ("ann", {"anna", "ben"}),  # first name Anna, last name Annen
        ("anna berg", {"anna"}),
        ("ste", {"clara"}),
    ],
)
def test_the_search_box_reads_email_phone_or_name(login, bob, shop, people, q, who):
    assert _ids(_list(login(bob), shop, q=q)) == {people[n].pk for n in who}


def test_the_search_finds_by_id(login, bob, shop, people):
    assert _ids(_list(login(bob), shop, q=f"#{people['ben'].pk}")) == {people["ben"].pk}


def test_an_htmx_search_renders_only_the_table(login, bob, shop, people):
    response = login(bob).get(f"/databases/{shop.slug}/", {"q": "ben@"}, headers={"HX-Request": "true", "HX-Target": "profiles"})
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<div id="profiles"')
    assert "<html" not in html and "ben@shop.example" in html and "anna.berg@" not in html


# --- the list: filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "op", "value", "who"),
    [
        ("city", "eq", "Berlin", {"anna"}),
        ("city", "starts", "ham", {"ben"}),
        ("city", "empty", "", {"clara"}),
        ("city", "set", "", {"anna", "ben"}),
        ("email", "eq", "BEN@shop.example", {"ben"}),
        ("email", "starts", "clara@", {"clara"}),
        ("phone", "eq", "030 12345678", {"anna"}),
        ("phone", "empty", "", {"ben"}),
        ("first_name", "starts", "cl", {"clara"}),
        ("tier", "eq", "Gold", {"anna"}),
        ("loyalty_points", "gt", "100", {"anna"}),
        ("loyalty_points", "lt", "100", {"ben"}),
        ("loyalty_points", "eq", "15", {"ben"}),
        ("score", "gt", "4.25", {"anna"}),
        ("vip", "yes", "", {"anna"}),
        ("vip", "no", "", {"ben"}),
        ("vip", "empty", "", {"clara"}),
        ("tags", "contains", "app", {"anna", "ben"}),
        ("tags", "contains", "newsletter", {"anna"}),
        ("since", "gt", "2023-06-01", {"ben"}),
        ("since", "lt", "2023-06-01", {"anna"}),
        ("last_order", "eq", "2024-05-01", {"anna"}),
        ("last_order", "gt", "2024-05-01", set()),
        ("prefs", "set", "", {"anna"}),
    ],
)
def test_field_filters_suit_each_type(login, bob, shop, people, field, op, value, who):
    response = _list(login(bob), shop, f0=field, op0=op, v0=value)
    assert response.status_code == 200
    assert _ids(response) == {people[n].pk for n in who}


def test_filters_combine_and_stay_in_the_page_links(login, bob, shop, people):
    for i in range(30):
        _p(shop, email=f"bulk{i}@shop.example", city="Berlin", vip=True)
    response = _list(login(bob), shop, f0="city", op0="eq", v0="Berlin", f1="vip", op1="yes")
    table = response.context["table"]
    assert len(table.rows) == 25 and table.count_label == "31 results"
    assert "f0=city" in table.next_url and "v0=Berlin" in table.next_url and "f1=vip" in table.next_url
    nxt = login(bob).get(table.next_url.replace("&amp;", "&"))
    assert {r.pk for r in nxt.context["table"].rows} == {people["anna"].pk} | set(
        Profile.objects.filter(email__in=["bulk0@shop.example", "bulk1@shop.example", "bulk2@shop.example",
                                          "bulk3@shop.example", "bulk4@shop.example"]).values_list("pk", flat=True)
    )


def test_a_filter_that_does_not_suit_the_field_shows_why(login, bob, shop, people):
    response = _list(login(bob), shop, f0="vip", op0="gt", v0="3")
    assert response.status_code == 200 and not response.context["table"].rows
    assert "does not apply to Vip (yes / no)" in response.content.decode()
    response = _list(login(bob), shop, f0="loyalty_points", op0="gt", v0="lots")
    assert "is not a whole number" in response.content.decode().replace("&#x27;", "'")


def test_an_incomplete_filter_row_is_ignored(login, bob, shop, people):
    assert len(_ids(_list(login(bob), shop, f0="city", op0="eq", v0=""))) == 3


def test_a_row_with_a_field_but_no_operator_starts_with_the_types_first(login, bob, shop, people):
    response = _list(login(bob), shop, f0="vip", f1="city")
    assert _ids(response) == {people["anna"].pk}  # VIP: "is yes"; City: "equals", no value yet
    rows = response.context["filter_rows"]
    assert (rows[0]["op"], rows[1]["op"]) == ("yes", "eq")
    assert [label for _, label in rows[0]["ops"]] == ["is yes", "is no", "is empty"]
    assert "op0=yes" in response.context["table"].base_url


def test_operators_are_named_for_the_type(login, bob, shop, people):
    rows = _list(login(bob), shop, f0="since", op0="gt", v0="2020-01-01", f1="loyalty_points", op1="lt", v1="5").context["filter_rows"]
    assert dict(rows[0]["ops"])["gt"] == "after" and dict(rows[1]["ops"])["lt"] == "less than"


def test_the_column_chooser_is_kept_in_the_session_per_database(login, bob, shop, people, acme):
    client = login(bob)
    response = client.post(f"/databases/{shop.slug}/", {"columns": ["email", "city", "tier", "nope"], "query": "q=ann&x=<y>"})
    assert response.status_code == 302 and response["Location"] == f"/databases/{shop.slug}/?q=ann&x=%3Cy%3E"
    page = _list(client, shop)
    assert [c["label"] for c in page.context["table"].header()] == ["E-mail", "City", "Tier"]
    assert "Berlin" in page.content.decode()
    other = database_create(account=acme, name="Other", actor=SYSTEM)
    assert len(_list(client, other).context["table"].header()) == 5  # another database keeps the defaults
    client.post(f"/databases/{shop.slug}/", {"reset": "1"})
    assert len(_list(client, shop).context["table"].header()) == 5


def test_a_cell_shows_sixty_characters_with_the_whole_value_in_its_title(login, bob, shop):
    long_name = "Maximiliane-" + "x" * 60
    profile = _p(shop, email="max@shop.example", first_name=long_name, last_name="Ng")
    nameless = _p(shop, email="nameless@shop.example")
    html = _list(login(bob), shop).content.decode()
    row = html.split(f'data-profile="{profile.pk}"')[1].split("</tr>")[0]
    assert f'href="/databases/{shop.slug}/profiles/{profile.pk}/"' in row
    assert f'<span title="{long_name}">{long_name[:59]}…</span>' in row
    assert "<span title=\"Ng\">Ng</span>" in row
    empty = html.split(f'data-profile="{nameless.pk}"')[1].split("</tr>")[0]
    assert ">nameless@shop.example</a>" in empty and empty.count("—") == 3  # first and last name, phone


def test_the_list_keeps_its_query_budget(login, bob, shop, people, django_assert_max_num_queries):
    client = login(bob)
    _list(client, shop)  # warm the session
    # session, user, memberships with the switcher's accounts, database, fields, rows (one page: no count)
    with django_assert_max_num_queries(6):
        assert _list(client, shop, q="ann", f0="city", op0="eq", v0="Berlin").status_code == 200
    for i in range(40):
        _p(shop, email=f"more{i}@shop.example", tags="x, y", vip=True)
    with django_assert_max_num_queries(7):  # a full page adds the bounded count, no query per row
        assert len(_list(client, shop).context["table"].rows) == 25


# --- the card ------------------------------------------------------------------------------------


def _card(db, p, tab=""):
    return f"/databases/{db.slug}/profiles/{p.pk}/" + (f"?tab={tab}" if tab else "")


def _form_data(response) -> dict[str, object]:
    """What the browser would send back for the card's form, unchanged."""
    form = response.context["form"]
    data: dict[str, object] = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    return data


def test_the_card_shows_every_field_with_inputs_suited_to_the_type(login, alice, shop, people):
    response = login(alice).get(_card(shop, people["anna"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Anna Berg" in html and ">AB<" in html and "+493012345678" in html
    assert 'type="date" name="since"' in html and 'value="2023-01-15"' in html
    assert 'type="datetime-local" name="last_order"' in html and 'value="2024-05-01T10:30"' in html  # Berlin time
    assert 'type="number" name="loyalty_points"' in html and 'type="checkbox" name="vip"' in html and "checked" in html
    assert '<select name="tier"' in html and '<option value="gold" selected>' in html
    assert 'value="newsletter, app"' in html and "{&quot;size&quot;: &quot;M&quot;}" in html
    assert [t for t, _ in response.context["tabs"]] == ["data", "subscriptions", "events", "segments", "history"]


def test_an_edit_with_a_bad_value_shows_the_error_on_its_field(login, alice, shop, people):
    client = login(alice)
    data = _form_data(client.get(_card(shop, people["anna"])))
    data.update(loyalty_points="12x", email="not an address", city="Potsdam")
    response = client.post(_card(shop, people["anna"]), data)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "is not a whole number" in errors["loyalty_points"][0] and "not a valid e-mail" in errors["email"][0]
    assert "invalid-feedback" in response.content.decode()
    people["anna"].refresh_from_db()
    assert people["anna"].data["city"] == "Berlin"  # nothing saved
    assert not ProfileChange.objects.exists()


def test_clearing_a_match_key_that_is_the_only_one_is_refused(login, alice, shop, people):
    client = login(alice)
    data = _form_data(client.get(_card(shop, people["ben"])))
    data["email"] = ""
    response = client.post(_card(shop, people["ben"]), data)
    assert response.status_code == 400
    assert "at least one match key" in response.context["form"].errors["email"][0]


def test_a_successful_edit_saves_only_what_changed_and_records_history(login, alice, shop, people):
    client = login(alice)
    anna = people["anna"]
    data = _form_data(client.get(_card(shop, anna)))
    data.update(city="Potsdam", loyalty_points="150", tier="silver")
    data.pop("vip")  # unticked
    response = client.post(_card(shop, anna), data)
    assert response.status_code == 302 and response["Location"] == _card(shop, anna)
    anna.refresh_from_db()
    assert anna.data["city"] == "Potsdam" and anna.data["loyalty_points"] == 150 and anna.data["vip"] is False
    assert anna.data["last_order"] == "2024-05-01T08:30:00Z"  # untouched, not rewritten
    (change,) = ProfileChange.objects.filter(profile=anna)
    assert set(change.changes) == {"city", "loyalty_points", "tier", "vip"}
    assert change.actor_label == "alice@acme.test" and change.source == "ui"
    assert "Saved: " in client.get(_card(shop, anna)).content.decode()
    history = client.get(_card(shop, anna, "history"))
    html = history.content.decode()
    assert "alice@acme.test" in html and "Berlin" in html and "Potsdam" in html and "Loyalty points" in html
    when = timezone.localtime(change.created_at, anna.account.tzinfo).strftime("%H:%M")
    assert when in html  # in the account's timezone


def test_a_stored_enum_value_no_longer_offered_survives_an_edit(login, alice, shop, people):
    anna = people["anna"]
    Profile.objects.filter(pk=anna.pk).update(data={**anna.data, "tier": "platinum"})
    client = login(alice)
    data = _form_data(client.get(_card(shop, anna)))
    assert data["tier"] == "platinum"
    data["city"] = "Bonn"
    assert client.post(_card(shop, anna), data).status_code == 302
    anna.refresh_from_db()
    assert anna.data["tier"] == "platinum" and anna.data["city"] == "Bonn"


def test_an_untouched_form_saves_nothing(login, alice, shop, people):
    client = login(alice)
    data = _form_data(client.get(_card(shop, people["clara"])))
    response = client.post(_card(shop, people["clara"]), data)
    assert response.status_code == 302 and not ProfileChange.objects.exists()


def test_a_history_tab_htmx_request_renders_only_the_tab(login, bob, shop, people):
    response = login(bob).get(_card(shop, people["anna"], "history"), headers={"HX-Request": "true", "HX-Target": "profile-tab"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="profile-tab"') and "No changes yet" in html and "<html" not in html


def test_an_analyst_reads_the_card_but_cannot_edit(login, bob, shop, people):
    client = login(bob)
    response = client.get(_card(shop, people["anna"]))
    assert response.status_code == 200 and response.context["form"] is None
    assert "Berlin" in response.content.decode() and "Merge" not in response.content.decode()
    assert client.post(_card(shop, people["anna"]), {"city": "Rome"}).status_code == 403
    assert client.get(f"/databases/{shop.slug}/profiles/new/").status_code == 403
    assert client.get(_card(shop, people["anna"]) + "merge/").status_code == 403
    assert client.post(_card(shop, people["anna"]) + "erase/", {"confirm": "ERASE"}).status_code == 403
    assert client.post(f"/databases/{shop.slug}/export/").status_code == 403
    people["anna"].refresh_from_db()
    assert people["anna"].data["city"] == "Berlin"


def test_charlie_gets_404_for_another_accounts_profiles(login, charlie, shop, people):
    client = login(charlie)
    assert client.get(f"/databases/{shop.slug}/").status_code == 404
    assert client.get(_card(shop, people["anna"])).status_code == 404
    assert client.post(f"/databases/{shop.slug}/export/").status_code == 404


def test_a_profile_of_another_database_is_404_on_this_ones_url(login, alice, shop, people, acme):
    other = database_create(account=acme, name="Other", actor=SYSTEM)
    assert login(alice).get(f"/databases/{other.slug}/profiles/{people['anna'].pk}/").status_code == 404


def test_the_card_keeps_its_query_budget(login, alice, shop, people, django_assert_max_num_queries):
    client = login(alice)
    client.get(_card(shop, people["anna"]))
    with django_assert_max_num_queries(7):
        assert client.get(_card(shop, people["anna"])).status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get(_card(shop, people["anna"], "history")).status_code == 200


# --- new profile ---------------------------------------------------------------------------------


def test_a_marketer_creates_a_profile(login, alice, shop):
    client = login(alice)
    assert client.get(f"/databases/{shop.slug}/profiles/new/").status_code == 200
    response = client.post(f"/databases/{shop.slug}/profiles/new/",
                           {"email": "New@Shop.example", "first_name": "Nora", "vip": "on", "tags": "a, b", "tier": ""})
    profile = Profile.objects.get(database=shop)
    assert response.status_code == 302 and response["Location"] == _card(shop, profile)
    assert profile.email == "new@shop.example" and profile.data == {"vip": True, "tags": ["a", "b"]}


def test_a_new_profile_needs_a_match_key_and_valid_values(login, alice, shop, people):
    client = login(alice)
    response = client.post(f"/databases/{shop.slug}/profiles/new/", {"first_name": "Nobody"})
    assert response.status_code == 400 and "Email is required (a match key)." in response.context["form"].errors["email"][0].replace("E-mail", "Email")
    response = client.post(f"/databases/{shop.slug}/profiles/new/", {"email": "ben@shop.example"})
    assert response.status_code == 400 and "Another profile already has this value." in response.context["form"].errors["email"]
    assert Profile.objects.filter(database=shop).count() == 3


# --- merge ---------------------------------------------------------------------------------------


def test_merging_finds_the_duplicate_previews_and_merges(login, alice, shop, people):
    client = login(alice)
    anna = people["anna"]
    dup = _p(shop, email="anna@old.example", first_name="Anna", last_name="Berg", city="Potsdam", loyalty_points=5,
             tags="vip-list", tier="silver")
    dup.email, dup.phone = "anna@old.example", None
    url = _card(shop, anna) + "merge/"
    page = client.get(url, {"find": "ANNA@old.example"})
    assert page.status_code == 200 and page.context["source"] == dup
    preview = {row["label"]: row for row in page.context["preview"]}
    assert preview["City"]["result"] == "Berlin" and preview["Notes"]["result"] == ""
    assert b"is deleted" in page.content
    by_id = client.get(url, {"find": f"#{dup.pk}"})
    assert by_id.context["source"] == dup
    myself = client.get(url, {"find": anna.email})
    assert myself.context["source"] is None and "That is this profile" in myself.context["error"]
    missing = client.get(url, {"find": "nobody@shop.example"})
    assert missing.context["source"] is None and "No profile" in missing.context["error"]

    response = client.post(url, {"source": dup.pk})
    assert response.status_code == 302 and response["Location"] == _card(shop, anna)
    assert not Profile.objects.filter(pk=dup.pk).exists()
    anna.refresh_from_db()
    assert anna.data["city"] == "Berlin" and anna.data["tier"] == "gold"
    assert AuditEvent.objects.filter(verb="profile.merged").exists()
    assert f"Profile #{dup.pk} was merged into this one." in client.get(_card(shop, anna)).content.decode()


def test_a_duplicate_of_another_database_cannot_be_merged(login, alice, shop, people, acme):
    other = database_create(account=acme, name="Other", actor=SYSTEM)
    stranger = _p(other, email="x@other.example")
    response = login(alice).post(_card(shop, people["anna"]) + "merge/", {"source": stranger.pk})
    assert response.status_code == 404 and Profile.objects.filter(pk=stranger.pk).exists()


# --- erase ---------------------------------------------------------------------------------------


def test_erasing_needs_the_word_and_forgets_the_person(login, alice, shop, people):
    client = login(alice)
    ben = people["ben"]
    url = _card(shop, ben) + "erase/"
    page = client.get(url)
    assert page.status_code == 200 and b"right-to-erasure" in page.content
    wrong = client.post(url, {"confirm": "erase"})
    assert wrong.status_code == 400 and b"Type ERASE" in wrong.content and Profile.objects.filter(pk=ben.pk).exists()
    response = client.post(url, {"confirm": "ERASE"})
    assert response.status_code == 302 and response["Location"] == f"/databases/{shop.slug}/"
    assert not Profile.objects.filter(pk=ben.pk).exists() and ErasedIdentity.objects.filter(database=shop).exists()
    html = client.get(response["Location"]).content.decode()
    assert re.search(rf"Profile #{ben.pk} is erased", html) and "ben@shop.example" not in html
