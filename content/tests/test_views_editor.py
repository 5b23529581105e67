"""The editor: a channel's form, saving versions, the checks panel, the sandboxed preview (its
headers, drafts, profiles, errors in place), the profile picker, versions / compare / restore,
links, and "send a test"."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.access import Actor
from content import services
from content.models import Template, TemplateVersion
from content.views.preview import PREVIEW_CSP
from profiles.services import database_create, profile_create

SYSTEM = Actor.system()
HTMX = {"HX-Request": "true"}
EMAIL = {"subject": "Hello {{ profile.first_name }}", "preheader": "Our news",
         "html": '<p>Hi {{ profile.first_name }} from {{ profile.city }}</p>'
                 '<p><a href="https://shop.example/sale">Sale</a> <a href="{{ links.unsubscribe }}">Unsubscribe</a></p>'}


@pytest.fixture
def welcome(acme, shop_db) -> Template:
    t = services.template_create(account=acme, name="Welcome", database=shop_db, kind="marketing", actor=SYSTEM)
    services.template_version_save(template=t, channel="email", data=EMAIL, actor=SYSTEM)
    return t


def _email_post(**parts: str) -> dict[str, str]:
    data = {"channel": "email", **{f"email-{k}": v for k, v in {**EMAIL, **parts}.items()}}
    return data


def _versions(template: Template, channel: str = "email") -> list[TemplateVersion]:
    return list(TemplateVersion.objects.filter(template=template, channel=channel).order_by("number"))


# --- the editor page ---------------------------------------------------------------------------------------


def test_the_editor_shows_the_current_version_in_the_channel_form(login, alice, welcome):
    r = login(alice).get(welcome.get_absolute_url())
    html = r.content.decode()
    assert r.status_code == 200
    assert 'name="email-subject"' in html and "Hello {{ profile.first_name }}" in html
    assert 'data-testid="save-version"' in html
    assert "profile.city" in html  # the database's field offered as a variable


def test_the_preview_frame_is_sandboxed_without_scripts_or_same_origin(login, alice, welcome):
    html = login(alice).get(welcome.get_absolute_url()).content.decode()
    frame = html[html.index("<iframe"):]
    frame = frame[: frame.index(">") + 1]
    assert 'sandbox=""' in frame
    assert "allow-scripts" not in frame and "allow-same-origin" not in frame


def test_each_channel_has_its_tab_and_form(login, alice, welcome):
    client = login(alice)
    sms = client.get(welcome.get_absolute_url(), {"channel": "sms"}).content.decode()
    assert 'name="sms-text"' in sms and 'data-testid="sms-counter"' in sms
    tg = client.get(welcome.get_absolute_url(), {"channel": "telegram"}).content.decode()
    assert 'name="telegram-buttons"' in tg and 'name="telegram-parse_mode"' in tg
    push = client.get(welcome.get_absolute_url(), {"channel": "webpush"}).content.decode()
    assert 'name="webpush-title"' in push and 'name="webpush-icon"' in push


def test_saving_makes_a_new_current_version_with_the_note(login, alice, welcome):
    r = login(alice).post(welcome.get_absolute_url(), {**_email_post(subject="Hi again"), "action": "save",
                                                       "note": "friendlier"})
    assert r.status_code == 302 and r["Location"].endswith("?channel=email")
    v1, v2 = _versions(welcome)
    assert v2.is_current and not v1.is_current
    assert v2.data["subject"] == "Hi again" and v2.note == "friendlier"


def test_saving_telegram_buttons_stores_rows(login, alice, welcome):
    login(alice).post(welcome.get_absolute_url(), {
        "channel": "telegram", "action": "save", "telegram-text": "Hi {{ profile.first_name }}",
        "telegram-parse_mode": "HTML", "telegram-buttons": "Shop | https://shop.example; Help | https://help.example\n"
                                                            "Unsubscribe | {{ links.unsubscribe }}"})
    (v,) = _versions(welcome, "telegram")
    assert v.data["buttons"] == [[{"text": "Shop", "url": "https://shop.example"},
                                  {"text": "Help", "url": "https://help.example"}],
                                 [{"text": "Unsubscribe", "url": "{{ links.unsubscribe }}"}]]


def test_a_malformed_button_line_is_said_under_the_field(login, alice, welcome):
    r = login(alice).post(welcome.get_absolute_url(), {"channel": "telegram", "action": "save",
                                                       "telegram-text": "Hi", "telegram-buttons": "just text"})
    assert r.status_code == 400 and "Line 1" in r.content.decode()
    assert not _versions(welcome, "telegram")


def test_a_syntax_error_is_shown_at_its_part_and_nothing_is_saved(login, alice, welcome):
    r = login(alice).post(welcome.get_absolute_url(), {**_email_post(subject="Hi {{ profile.first_name"),
                                                       "action": "save"})
    assert r.status_code == 400
    html = r.content.decode()
    between = html[html.index('name="email-subject"'):html.index('name="email-preheader"')]
    assert "invalid-feedback" in between
    assert len(_versions(welcome)) == 1


def test_an_email_without_html_is_refused(login, alice, welcome):
    r = login(alice).post(welcome.get_absolute_url(), {**_email_post(html=""), "action": "save"})
    assert r.status_code == 400 and len(_versions(welcome)) == 1


def test_an_analyst_reads_the_editor_without_save_and_cannot_save(login, bob, welcome):
    client = login(bob)
    html = client.get(welcome.get_absolute_url()).content.decode()
    assert 'data-testid="save-version"' not in html and "readonly" in html
    assert 'data-testid="test-send"' not in html
    r = client.post(welcome.get_absolute_url(), {**_email_post(subject="Hacked"), "action": "save"})
    assert r.status_code == 302 and len(_versions(welcome)) == 1


def test_check_renders_the_page_with_the_draft_unsaved(login, bob, welcome):
    r = login(bob).post(welcome.get_absolute_url(), {**_email_post(subject="Draft subject {{ profile.first_name }}"),
                                                     "action": "check"})
    assert r.status_code == 200
    html = r.content.decode()
    assert "Draft subject Alex" in html  # the inbox line, rendered for the sample person
    assert len(_versions(welcome)) == 1


# --- the checks panel (htmx) -----------------------------------------------------------------------------


def test_the_check_partial_lists_lint_messages_and_the_inbox_line(login, alice, welcome):
    r = login(alice).post(reverse("content:template_check", args=[welcome.pk]),
                          _email_post(html='<p>Hi</p><img src="https://x.example/a.png">'), headers=HTMX)
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html
    assert 'data-testid="lint-list"' in html
    assert "lint-warning" in html or "lint-error" in html
    assert 'hx-swap-oob="true"' in html and "Hello Alex" in html


def test_the_check_partial_reports_a_render_error_with_part_and_line(login, alice, welcome):
    r = login(alice).post(reverse("content:template_check", args=[welcome.pk]),
                          _email_post(html="<p>one</p>\n<p>{{ profile.first_name }</p>"), headers=HTMX)
    html = r.content.decode()
    assert 'data-testid="render-error"' in html
    assert "Html, line 2" in html


def test_a_clean_draft_says_so(login, alice, welcome):
    r = login(alice).post(reverse("content:template_check", args=[welcome.pk]),
                          {"channel": "sms", "sms-text": "Hi {{ profile.first_name }}"}, headers=HTMX)
    assert 'data-testid="lint-clean"' in r.content.decode()


# --- the preview ---------------------------------------------------------------------------------------------


def test_the_preview_is_served_with_a_sandbox_csp_and_same_origin_framing(login, bob, welcome):
    r = login(bob).get(reverse("content:template_preview", args=[welcome.pk]), {"channel": "email"})
    assert r.status_code == 200
    assert r["Content-Security-Policy"] == PREVIEW_CSP
    assert r["Content-Security-Policy"].startswith("sandbox;") and "script-src" not in r["Content-Security-Policy"]
    assert r["X-Frame-Options"] == "SAMEORIGIN"
    assert "no-store" in r["Cache-Control"]


def test_the_preview_renders_the_saved_version_for_the_sample_person(login, alice, welcome):
    html = login(alice).get(reverse("content:template_preview", args=[welcome.pk]), {"channel": "email"}).content.decode()
    assert "Hi Alex" in html


def test_the_preview_renders_as_a_chosen_profile(login, alice, welcome, anna):
    html = login(alice).get(reverse("content:template_preview", args=[welcome.pk]),
                            {"channel": "email", "profile": anna.pk}).content.decode()
    assert "Hi Anna from Berlin" in html


def test_a_profile_of_another_account_is_ignored_by_the_preview(login, charlie, alice, welcome, globex):
    theirs_db = database_create(account=globex, name="Theirs", actor=SYSTEM)
    theirs = profile_create(database=theirs_db, actor=SYSTEM, values={"email": "x@globex.example", "first_name": "Zed"})
    html = login(alice).get(reverse("content:template_preview", args=[welcome.pk]),
                            {"channel": "email", "profile": theirs.pk}).content.decode()
    assert "Zed" not in html and "Hi Alex" in html


def test_the_preview_renders_a_posted_draft(login, alice, welcome):
    r = login(alice).post(reverse("content:template_preview", args=[welcome.pk]),
                          _email_post(html="<p>Draft for {{ profile.first_name }}</p>"))
    assert r.status_code == 200 and "Draft for Alex" in r.content.decode()
    assert r["Content-Security-Policy"] == PREVIEW_CSP
    assert len(_versions(welcome)) == 1


def test_the_preview_uses_posted_trigger_data(login, alice, welcome):
    r = login(alice).post(reverse("content:template_preview", args=[welcome.pk]),
                          {**_email_post(html="<p>Order {{ data.order.number }}</p>"),
                           "sample_data": '{"order": {"number": "A-17"}}'})
    assert "Order A-17" in r.content.decode()


def test_the_preview_shows_a_render_error_in_place(login, alice, welcome):
    r = login(alice).post(reverse("content:template_preview", args=[welcome.pk]),
                          _email_post(subject="{{ profile.__class__ }}"))
    html = r.content.decode()
    assert r.status_code == 200 and 'data-testid="preview-error"' in html
    assert "Subject" in html
    assert r["Content-Security-Policy"] == PREVIEW_CSP


def test_the_sms_preview_is_a_phone_mockup(login, alice, welcome):
    r = login(alice).post(reverse("content:template_preview", args=[welcome.pk]),
                          {"channel": "sms", "sms-text": "Hi {{ profile.first_name }} <b>x</b>"})
    html = r.content.decode()
    assert 'data-testid="sms-bubble"' in html and "Hi Alex &lt;b&gt;x&lt;/b&gt;" in html


def test_the_preview_of_an_old_version_by_id(login, alice, welcome):
    old = _versions(welcome)[0]
    services.template_version_save(template=welcome, channel="email", data={**EMAIL, "html": "<p>New</p>"},
                                   actor=SYSTEM)
    html = login(alice).get(reverse("content:template_preview", args=[welcome.pk]),
                            {"version": old.pk}).content.decode()
    assert "Hi Alex" in html and "<p>New</p>" not in html


# --- the profile picker ----------------------------------------------------------------------------------------


def test_the_picker_finds_profiles_of_the_templates_database(login, bob, welcome, anna):
    r = login(bob).get(reverse("content:template_profiles", args=[welcome.pk]), {"q": "anna@"}, headers=HTMX)
    html = r.content.decode()
    assert f'data-pick-profile="{anna.pk}"' in html and "<html" not in html


def test_the_picker_finds_nobody_in_other_databases(login, alice, welcome, acme):
    other = database_create(account=acme, name="Other", actor=SYSTEM)
    profile_create(database=other, actor=SYSTEM, values={"email": "anna@other.example"})
    html = login(alice).get(reverse("content:template_profiles", args=[welcome.pk]), {"q": "anna@"},
                            headers=HTMX).content.decode()
    assert "anna@other.example" not in html and "matches" in html


# --- versions, compare, restore, links -----------------------------------------------------------------------


def test_versions_list_the_channels_history_newest_first(login, bob, welcome):
    services.template_version_save(template=welcome, channel="email", data={**EMAIL, "subject": "Second"},
                                   actor=SYSTEM, note="second try")
    html = login(bob).get(reverse("content:template_versions", args=[welcome.pk]), {"channel": "email"}).content.decode()
    assert html.index('data-version="2"') < html.index('data-version="1"')
    assert "second try" in html and "Current" in html


def test_compare_shows_what_changed_between_two_versions(login, bob, welcome):
    services.template_version_save(template=welcome, channel="email", data={**EMAIL, "subject": "Brand new subject"},
                                   actor=SYSTEM)
    v1, v2 = _versions(welcome)
    client = login(bob)
    for mode in ("split", "unified"):
        r = client.get(reverse("content:version_compare", args=[welcome.pk]), {"a": v1.pk, "b": v2.pk, "mode": mode})
        html = r.content.decode()
        assert r.status_code == 200
        assert "Brand new subject" in html and "diff-add" in html and "diff-del" in html
    assert 'data-testid="restore-a"' not in html  # an analyst gets no restore button


def test_compare_without_choice_compares_the_last_two(login, alice, welcome):
    services.template_version_save(template=welcome, channel="email", data={**EMAIL, "subject": "Later"}, actor=SYSTEM)
    r = login(alice).get(reverse("content:version_compare", args=[welcome.pk]), {"channel": "email"})
    assert r.status_code == 200 and "Later" in r.content.decode() and 'data-testid="restore-a"' in r.content.decode()


def test_restore_makes_a_new_version_with_the_old_data(login, alice, welcome):
    services.template_version_save(template=welcome, channel="email", data={**EMAIL, "subject": "Later"}, actor=SYSTEM)
    v1 = _versions(welcome)[0]
    r = login(alice).post(reverse("content:version_restore", args=[welcome.pk, v1.pk]))
    assert r.status_code == 302
    versions = _versions(welcome)
    assert len(versions) == 3 and versions[-1].is_current
    assert versions[-1].data["subject"] == EMAIL["subject"] and versions[-1].restored_from_id == v1.pk


def test_an_analyst_cannot_restore(login, bob, welcome):
    v1 = _versions(welcome)[0]
    assert login(bob).post(reverse("content:version_restore", args=[welcome.pk, v1.pk])).status_code == 403


def test_links_lists_the_catalogued_links_of_the_current_version(login, bob, welcome):
    html = login(bob).get(reverse("content:template_links", args=[welcome.pk]), {"channel": "email"}).content.decode()
    assert "https://shop.example/sale" in html
    assert "links.unsubscribe" not in html


# --- send a test ---------------------------------------------------------------------------------------------


@pytest.fixture
def locmem_sms(settings):
    from delivery.backends import locmem

    settings.DELIVERY_BACKENDS = {**settings.DELIVERY_BACKENDS,
                                  "sms": {"BACKEND": "delivery.backends.locmem.LocmemBackend", "OPTIONS": {}}}
    locmem.outbox.clear()
    return locmem.outbox


def test_send_a_test_sms_through_the_backend_personalised_as_a_profile(login, alice, welcome, anna, locmem_sms):
    services.template_version_save(template=welcome, channel="sms", data={"text": "Hi {{ profile.first_name }}"},
                                   actor=SYSTEM)
    r = login(alice).post(reverse("content:template_test_send", args=[welcome.pk]),
                          {"channel": "sms", "address": "+4915112345678", "profile": anna.pk}, headers=HTMX)
    html = r.content.decode()
    assert r.status_code == 200 and 'data-testid="toast"' in html and "text-bg-success" in html
    assert "sent to +4915112345678" in html and "locmem-1" in html
    (message,) = locmem_sms
    assert message.to == "+4915112345678" and message.payload["text"] == "Hi Anna"


def test_send_a_test_without_a_saved_version_says_to_save_first(login, alice, welcome, locmem_sms):
    r = login(alice).post(reverse("content:template_test_send", args=[welcome.pk]),
                          {"channel": "sms", "address": "+4915112345678"}, headers=HTMX)
    html = r.content.decode()
    assert "text-bg-danger" in html and "Save the SMS first" in html
    assert locmem_sms == []


def test_send_a_test_email_without_a_sender_says_what_is_missing(login, alice, welcome):
    r = login(alice).post(reverse("content:template_test_send", args=[welcome.pk]),
                          {"channel": "email", "address": "me@example.com"}, headers=HTMX)
    html = r.content.decode()
    assert "text-bg-danger" in html and "Add a sender" in html


def test_send_a_test_without_htmx_redirects_with_a_message(login, alice, welcome, locmem_sms):
    services.template_version_save(template=welcome, channel="sms", data={"text": "Hi"}, actor=SYSTEM)
    client = login(alice)
    r = client.post(reverse("content:template_test_send", args=[welcome.pk]),
                    {"channel": "sms", "address": "+4915112345678"})
    assert r.status_code == 302 and r["Location"].endswith("?channel=sms")
    assert "sent to +4915112345678" in client.get(r["Location"]).content.decode()


def test_an_analyst_cannot_send_a_test(login, bob, welcome, locmem_sms):
    r = login(bob).post(reverse("content:template_test_send", args=[welcome.pk]),
                        {"channel": "sms", "address": "+4915112345678"})
    assert r.status_code == 403 and locmem_sms == []


def test_the_checks_count_the_sms_as_sent_with_variables_filled_in(login, alice, welcome, anna):
    r = login(alice).post(reverse("content:template_check", args=[welcome.pk]),
                          {"channel": "sms", "sms-text": "Hi {{ profile.first_name }} €", "profile": anna.pk},
                          headers=HTMX)
    html = r.content.decode()
    # "Hi Anna €": 8 + 2 septets (€ is in the GSM extension table).
    assert "As sent to Anna" in html and "GSM-7</strong> · 10 characters" in html


def test_the_versions_list_offers_restore_of_older_versions_to_editors_only(login, alice, bob, welcome):
    services.template_version_save(template=welcome, channel="email", data={**EMAIL, "subject": "Later"}, actor=SYSTEM)
    v1 = _versions(welcome)[0]
    url = reverse("content:template_versions", args=[welcome.pk])
    mine = login(alice).get(url, {"channel": "email"}).content.decode()
    assert 'data-testid="restore-1"' in mine and 'data-testid="restore-2"' not in mine
    assert reverse("content:version_restore", args=[welcome.pk, v1.pk]) in mine
    assert 'data-testid="restore-1"' not in login(bob).get(url, {"channel": "email"}).content.decode()


def test_without_javascript_the_picker_is_a_page_linking_back_to_the_editor(login, alice, welcome, anna):
    html = login(alice).get(reverse("content:template_profiles", args=[welcome.pk]), {"q": "anna@"}).content.decode()
    assert "<html" in html and f"?channel=email&amp;profile={anna.pk}" in html


def test_without_javascript_check_shows_the_editor_with_the_draft_checked(login, alice, welcome):
    r = login(alice).post(reverse("content:template_check", args=[welcome.pk]),
                          _email_post(html='<p>Hi</p><img src="https://x.example/a.png">'))
    html = r.content.decode()
    assert r.status_code == 200 and "<html" in html and 'data-testid="lint-list"' in html
    assert "https://x.example/a.png" in html  # the draft stays in the box
    assert len(_versions(welcome)) == 1


def test_the_editor_opens_with_the_chosen_profile_and_width(login, alice, welcome, anna):
    html = login(alice).get(welcome.get_absolute_url(), {"profile": anna.pk, "width": "phone"}).content.decode()
    assert 'id="preview-as-label">Anna' in html and "width-phone" in html
    assert f"profile={anna.pk}" in html[html.index("<iframe"):html.index("</iframe>")]
