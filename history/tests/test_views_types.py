"""The event type pages: the list (catalogue and custom types), creating and changing a type with
its property schema, deleting (or disabling) one, who may do what, and other accounts."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from accounts.access import Actor
from accounts.models import AuditEvent
from history.catalogue import SYSTEM_TYPES, type_id
from history.models import EventType
from history.services import EventIn, events_ingest, eventtype_create
from history.views.types import example_request

SYSTEM = Actor.system()
pytestmark = pytest.mark.django_db


def _html(response) -> str:
    return response.content.decode()


def _row(html: str, name: str) -> str:
    m = re.search(rf'<tr data-type="{re.escape(name)}">.*?</tr>', html, re.S)
    assert m, f"no row for {name}"
    return m.group(0)


def _form(prefix: str = "properties", rows: list[dict] | None = None, **fields) -> dict:
    """A POST of the type form: its fields and the property rows as the formset names them."""
    rows = rows or []
    data = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "100", "strict": "strict", **fields}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if value is True:
                data[f"{prefix}-{i}-{key}"] = "on"
            elif value not in (False, None):
                data[f"{prefix}-{i}-{key}"] = value
        data.setdefault(f"{prefix}-{i}-type", "string")
    return data


# --- the list ------------------------------------------------------------------------------------


def test_it_lists_the_catalogue_and_the_accounts_own_types(login, bob, cart_abandoned):
    html = _html(login(bob).get(reverse("history:types")))
    custom = _row(html, "cart_abandoned")
    assert "Custom" in custom and "Cart abandoned" in custom
    assert re.search(r"<code[^>]*>sku</code>: <span[^>]*>string</span><span[^>]*>\*</span>", custom)  # required
    assert re.search(r"<code[^>]*>price</code>: <span[^>]*>decimal</span>", custom)
    assert "Rejected" in custom and "Enabled" in custom
    order = _row(html, "order.placed")
    assert "System" in order and "Orders" in order and "bi-bag" in order
    opened = _row(html, "message.opened")
    assert "Platform only" in opened and "Platform only" not in order
    assert set(re.findall(r'<tr data-type="([^"]+)"', html)) == {t.name for t in SYSTEM_TYPES} | {"cart_abandoned"}
    # bob reads; he cannot create or edit
    assert reverse("history:type_create") not in html
    assert "Edit cart_abandoned" not in html


def test_it_offers_an_empty_state_until_the_account_has_types_of_its_own(login, adam, bob, acme):
    html = _html(login(adam).get(reverse("history:types")))
    assert 'data-testid="no-custom-types"' in html
    assert html.count(reverse("history:type_create")) == 1  # the empty state's button (the header's comes later)
    assert 'data-testid="no-custom-types"' in _html(login(bob).get(reverse("history:types")))
    eventtype_create(account=acme, name="wishlist_added", actor=SYSTEM)
    html = _html(login(adam).get(reverse("history:types")))
    assert 'data-testid="no-custom-types"' not in html
    assert "Edit wishlist_added" in html and html.count(reverse("history:type_create")) == 1


def test_it_searches_and_filters_by_group(login, bob, cart_abandoned):
    client = login(bob)
    html = _html(client.get(reverse("history:types"), {"q": "abandon"}))
    assert re.findall(r'<tr data-type="([^"]+)"', html) == ["cart_abandoned"]
    html = _html(client.get(reverse("history:types"), {"q": "promo code"}))
    assert set(re.findall(r'<tr data-type="([^"]+)"', html)) == {"promo.issued", "promo.redeemed"}
    html = _html(client.get(reverse("history:types"), {"group": "orders"}))
    assert set(re.findall(r'<tr data-type="([^"]+)"', html)) == {"order.placed", "order.paid", "order.cancelled"}
    html = _html(client.get(reverse("history:types"), {"group": "custom"}))
    assert re.findall(r'<tr data-type="([^"]+)"', html) == ["cart_abandoned"]
    # The table alone, for htmx
    partial = client.get(reverse("history:types"), {"q": "order"}, headers={"HX-Request": "true", "HX-Target": "event-types"})
    assert _html(partial).startswith('<div id="event-types"') and "<html" not in _html(partial)


def test_it_pages_with_a_cursor(login, bob, acme):
    for i in range(45):
        eventtype_create(account=acme, name=f"t_{i:02}", actor=SYSTEM)
    client = login(bob)
    first = _html(client.get(reverse("history:types")))
    names = re.findall(r'<tr data-type="([^"]+)"', first)
    assert len(names) == 50 and names == sorted(names)
    after = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    rest = re.findall(r'<tr data-type="([^"]+)"', _html(client.get(after)))
    assert len(rest) == 45 + len(SYSTEM_TYPES) - 50 and not set(rest) & set(names)


def test_it_shows_only_the_accounts_own_custom_types(login, charlie, cart_abandoned, globex):
    eventtype_create(account=globex, name="lead_scored", actor=SYSTEM)
    html = _html(login(charlie).get(reverse("history:types")))
    assert "lead_scored" in html and "cart_abandoned" not in html


def test_the_list_runs_a_fixed_number_of_queries(login, bob, acme, django_assert_max_num_queries):
    for i in range(30):
        eventtype_create(account=acme, name=f"t_{i:02}", actor=SYSTEM, properties=[{"name": "a", "type": "string"}])
    client = login(bob)
    client.get(reverse("history:types"))
    with django_assert_max_num_queries(10):
        assert client.get(reverse("history:types")).status_code == 200


# --- create --------------------------------------------------------------------------------------


def test_an_admin_creates_a_type_with_properties(login, adam, acme):
    client = login(adam)
    page = _html(client.get(reverse("history:type_create")))
    assert page.count('name="properties-') > 3 and "properties-__prefix__-name" in page  # blank rows and the template
    response = client.post(reverse("history:type_create"), _form(
        label="Cart abandoned", name="cart_abandoned", description="Left the checkout", strict="loose",
        rows=[{"name": "sku", "type": "string", "required": True}, {"name": "", "type": "string"},
              {"name": "price", "type": "decimal"}, {"name": "size", "type": "enum", "choices": "S, M, L"},
              {"name": "note", "type": "string", "DELETE": True}],
    ))
    assert response.status_code == 302
    et = EventType.objects.get(account=acme, name="cart_abandoned")
    assert response["Location"] == reverse("history:type_detail", args=["cart_abandoned"])
    assert (et.label, et.description, et.strict, et.enabled) == ("Cart abandoned", "Left the checkout", False, True)
    assert et.properties == [
        {"name": "sku", "type": "string", "required": True},
        {"name": "price", "type": "decimal", "required": False},
        {"name": "size", "type": "enum", "required": False, "choices": ["S", "M", "L"]},
    ]
    assert AuditEvent.objects.filter(account=acme, verb="event_type.created").exists()


def test_a_schema_error_is_shown_at_its_row_and_field(login, adam, acme):
    response = login(adam).post(reverse("history:type_create"), _form(
        label="Thing", name="thing",
        rows=[{"name": "ok", "type": "string"}, {"name": "", "type": "string"},  # blank: left out
              {"name": "9bad", "type": "string"}, {"name": "size", "type": "enum"}, {"name": "ok", "type": "integer"}],
    ))
    assert response.status_code == 400
    html = _html(response)
    rows = re.findall(r'<div class="row g-2 align-items-start mb-2 property-row[^"]*" data-row>(.*?)\n</div>', html, re.S)
    assert len(rows) == 6  # five posted and the template's
    assert 'data-error="name"' not in rows[0] and 'data-error' not in rows[1]
    assert re.search(r'name="properties-2-name"[^>]*is-invalid|is-invalid[^>]*name="properties-2-name"', rows[2])
    assert re.search(r'data-error="name">.*9bad.*is not a property name', rows[2])
    assert re.search(r'data-error="choices">List the allowed values', rows[3])
    assert re.search(r'data-error="name">.*appears twice', rows[4])
    assert not EventType.objects.filter(account=acme, name="thing").exists()
    # What was typed comes back.
    assert 'value="9bad"' in rows[2]


@pytest.mark.parametrize(("name", "message"), [
    ("Cart Abandoned", "lowercase letters"),
    ("order.placed", "system catalogue"),
    ("cart_abandoned", "already an event type"),
    ("new", "page that creates types"),
])
def test_it_refuses_names_it_cannot_use(login, adam, cart_abandoned, name, message):
    response = login(adam).post(reverse("history:type_create"), _form(name=name))
    assert response.status_code == 400
    field = re.search(r'name="name".*?</div>\s*</div>', _html(response), re.S).group(0)
    assert message in field and "is-invalid" in field


def test_marketers_and_analysts_cannot_create_types(login, alice, bob, acme):
    for user in (alice, bob):
        client = login(user)
        assert client.get(reverse("history:type_create")).status_code == 403
        assert client.post(reverse("history:type_create"), _form(name="sneaky")).status_code == 403
    assert not EventType.objects.filter(account=acme).exists()


# --- detail and edit -----------------------------------------------------------------------------


def test_an_admin_changes_a_type(login, adam, cart_abandoned):
    client = login(adam)
    page = _html(client.get(reverse("history:type_detail", args=["cart_abandoned"])))
    assert 'value="sku"' in page and 'value="price"' in page and 'name="enabled"' in page
    assert 'name="name"' not in page  # the name stays
    data = _form(label="Cart left behind", description="", strict="loose", enabled="on",
                 rows=[{"name": "sku", "type": "string", "required": True}, {"name": "price", "type": "decimal", "DELETE": True},
                       {"name": "qty", "type": "integer"}])
    data["properties-INITIAL_FORMS"] = "2"
    response = client.post(reverse("history:type_detail", args=["cart_abandoned"]), data)
    assert response.status_code == 302
    cart_abandoned.refresh_from_db()
    assert (cart_abandoned.label, cart_abandoned.strict, cart_abandoned.enabled) == ("Cart left behind", False, True)
    assert [p["name"] for p in cart_abandoned.properties] == ["sku", "qty"]
    # Disabling: the switch off.
    data.pop("enabled")
    client.post(reverse("history:type_detail", args=["cart_abandoned"]), data)
    cart_abandoned.refresh_from_db()
    assert cart_abandoned.enabled is False


def test_an_edit_error_keeps_the_rows_as_typed(login, adam, cart_abandoned):
    data = _form(label="Cart abandoned", rows=[{"name": "sku", "type": "string"}, {"name": "sku", "type": "integer"}],
                 enabled="on")
    data["properties-INITIAL_FORMS"] = "2"
    response = login(adam).post(reverse("history:type_detail", args=["cart_abandoned"]), data)
    assert response.status_code == 400
    assert re.search(r'data-error="name">.*appears twice', _html(response))
    cart_abandoned.refresh_from_db()
    assert [p["name"] for p in cart_abandoned.properties] == ["sku", "price"]


def test_the_detail_page_shows_an_example_request_with_example_values(login, bob, cart_abandoned, shop):
    html = _html(login(bob).get(reverse("history:type_detail", args=["cart_abandoned"])))
    payload = json.loads(re.search(r'data-testid="example-payload">(.*?)</code>', html, re.S).group(1).replace("&quot;", '"'))
    assert payload["event"] == "cart_abandoned" and payload["database"] == shop.slug
    assert payload["properties"] == {"sku": "SKU-1001", "price": 19.99}
    assert "/api/v1/events" in html
    # bob reads: no form, a read-only card
    assert "<form method=\"post\" action=\"" + reverse("history:type_detail", args=["cart_abandoned"]) not in html
    assert 'data-testid="property-table"' in html and "Only admins can change event types" in html


def test_example_values_follow_the_property_types(cart_abandoned):
    cart_abandoned.properties = [{"name": n, "type": t, "required": False, **({"choices": ["gold", "silver"]} if t == "enum" else {})}
                                 for n, t in [("count", "integer"), ("ok", "boolean"), ("on", "date"), ("at", "datetime"),
                                              ("tier", "enum"), ("tags", "list"), ("meta", "json"), ("page_url", "string")]]
    body = json.loads(example_request(cart_abandoned, "shop")["payload"])
    props = body["properties"]
    assert props["count"] == 3 and props["ok"] is True and props["tier"] == "gold" and props["tags"] == ["red", "blue"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", props["on"]) and props["at"].endswith("Z") and props["meta"] == {"key": "value"}
    assert props["page_url"].startswith("https://")


def test_a_system_type_is_a_read_only_card(login, adam, shop):
    client = login(adam)
    html = _html(client.get(reverse("history:type_detail", args=["order.placed"])))
    assert "Order placed" in html and 'data-testid="property-table"' in html and "order_id" in html
    assert 'data-type-form' not in html and reverse("history:type_delete", args=["order.placed"]) not in html
    assert '"event": "order.placed"' in html.replace("&quot;", '"')
    assert client.post(reverse("history:type_detail", args=["order.placed"]), {"label": "x"}).status_code == 403
    assert EventType.objects.get(pk=type_id("order.placed")).label == "Order placed"
    # A type only the platform records has no example: the API refuses it.
    html = _html(client.get(reverse("history:type_detail", args=["message.opened"])))
    assert "example-payload" not in html and "the API refuses it" in html
    assert client.get(reverse("history:type_delete", args=["order.placed"])).status_code == 404


def test_the_detail_page_tells_when_the_last_event_came(login, bob, acme, anna, cart_abandoned):
    client = login(bob)
    assert "No events of this type yet" in _html(client.get(reverse("history:type_detail", args=["cart_abandoned"])))
    events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
    html = _html(client.get(reverse("history:type_detail", args=["cart_abandoned"])))
    assert re.search(r'data-testid="latest">Latest event', html)


def test_marketers_cannot_change_a_type(login, alice, cart_abandoned):
    client = login(alice)
    assert client.get(reverse("history:type_detail", args=["cart_abandoned"])).status_code == 200
    data = _form(label="Hijacked", rows=[], enabled="on")
    assert client.post(reverse("history:type_detail", args=["cart_abandoned"]), data).status_code == 403
    assert client.post(reverse("history:type_delete", args=["cart_abandoned"])).status_code == 403
    cart_abandoned.refresh_from_db()
    assert cart_abandoned.label == "Cart abandoned"


# --- delete --------------------------------------------------------------------------------------


def test_an_admin_deletes_a_type_without_events(login, adam, acme, cart_abandoned):
    client = login(adam)
    html = _html(client.get(reverse("history:type_delete", args=["cart_abandoned"])))
    assert 'data-testid="delete-warning"' in html
    response = client.post(reverse("history:type_delete", args=["cart_abandoned"]))
    assert response.status_code == 302 and response["Location"] == reverse("history:types")
    assert not EventType.objects.filter(account=acme, name="cart_abandoned").exists()


def test_a_type_with_events_is_refused_and_disabling_is_offered(login, adam, acme, anna, cart_abandoned):
    events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
    client = login(adam)
    page = _html(client.get(reverse("history:type_delete", args=["cart_abandoned"])))
    assert 'data-testid="delete-refused"' in page and 'value="disable"' in page
    response = client.post(reverse("history:type_delete", args=["cart_abandoned"]))
    assert response.status_code == 409
    html = _html(response)
    assert "Events of this type are stored; disable the type instead" in html and 'value="disable"' in html
    assert EventType.objects.filter(pk=cart_abandoned.pk).exists()
    response = client.post(reverse("history:type_delete", args=["cart_abandoned"]), {"action": "disable"})
    assert response.status_code == 302
    cart_abandoned.refresh_from_db()
    assert cart_abandoned.enabled is False


# --- other accounts ------------------------------------------------------------------------------


def test_another_accounts_type_is_a_404(login, charlie, cart_abandoned, globex):
    client = login(charlie)
    for route in ("history:type_detail", "history:type_delete"):
        url = reverse(route, args=["cart_abandoned"])
        assert client.get(url).status_code == 404
        assert client.post(url, _form(label="x", enabled="on")).status_code == 404
        assert client.get(url, headers={"HX-Request": "true"}).status_code == 404
    assert client.post(reverse("history:type_delete", args=["cart_abandoned"]), {"action": "disable"}).status_code == 404
    cart_abandoned.refresh_from_db()
    assert cart_abandoned.enabled and cart_abandoned.label == "Cart abandoned"


def test_the_same_name_in_two_accounts_opens_each_accounts_own(login, olivia, charlie, cart_abandoned, globex):
    eventtype_create(account=globex, name="cart_abandoned", label="Globex carts", actor=SYSTEM)
    assert "Globex carts" in _html(login(charlie).get(reverse("history:type_detail", args=["cart_abandoned"])))
    html = _html(login(olivia).get(reverse("history:type_detail", args=["cart_abandoned"])))
    assert "Cart abandoned" in html and "Globex carts" not in html


def test_the_sidebar_links_the_history_pages(login, adam, bob):
    html = _html(login(adam).get(reverse("history:types")))
    nav = re.search(r'<nav class="nav flex-column sidebar-nav">.*?</nav>', html, re.S).group(0)
    assert "History" in nav
    assert re.search(rf'class="nav-link active" href="{reverse("history:types")}"', nav)
    assert reverse("history:settings") in nav
    nav = re.search(r'<nav class="nav flex-column sidebar-nav">.*?</nav>', _html(login(bob).get(reverse("history:types"))), re.S).group(0)
    assert reverse("history:types") in nav and reverse("history:settings") not in nav


def test_a_post_without_the_rows_is_answered_not_crashed(login, olivia, cart_abandoned):
    client = login(olivia)
    for url in (reverse("history:type_create"), reverse("history:type_detail", args=["cart_abandoned"])):
        response = client.post(url, {"name": "x_y", "label": "X"})
        assert response.status_code == 400
        assert "ManagementForm data is missing" in _html(response)
    cart_abandoned.refresh_from_db()
    assert cart_abandoned.label == "Cart abandoned"
