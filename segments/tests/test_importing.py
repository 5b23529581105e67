"""Adding the profiles of an import to a static segment (the "segment" ImportHook): the mapping
step's option, the run, refusals, `manage.py import_profiles --segment` and the import's page."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import AuditEvent
from profiles.importing import ImportMappingError, Options, auto_mapping, import_file, sniff, writable_fields
from profiles.models import ProfileImport
from segments.models import Segment, SegmentMember
from segments.services import segment_create, segment_delete, segment_members_add, segment_update
from segments.tests.conftest import SYSTEM, field, group

CSV = "email,first_name\nanna@shop.example.com,Anna\ncarl@shop.example.com,Carl\ndora@shop.example.com,Dora\n"


@pytest.fixture
def vips(shop) -> Segment:
    return segment_create(database=shop, name="VIPs", kind="static", actor=SYSTEM, compute=False)


@pytest.fixture
def berliners(shop) -> Segment:
    return segment_create(database=shop, name="Berliners", kind="dynamic", actor=SYSTEM, compute=False,
                          conditions=group(field("city", "eq", "Berlin")))


@pytest.fixture
def globex_static(globex_db) -> Segment:
    return segment_create(database=globex_db, name="Globex list", kind="static", actor=SYSTEM, compute=False)


def members(segment: Segment) -> set[str]:
    from profiles.models import Profile

    ids = SegmentMember.objects.filter(segment_id=segment.pk).values_list("profile_id", flat=True)
    return set(Profile.objects.filter(pk__in=ids).values_list("email", flat=True))


def upload(client, db) -> ProfileImport:
    client.post(reverse("profiles:import_upload", args=[db.slug]), {"file": SimpleUploadedFile("people.csv", CSV.encode())})
    return ProfileImport.objects.filter(database=db).latest("pk")


def detail(db, imp) -> str:
    return reverse("profiles:import_detail", args=[db.slug, imp.pk])


def post_start(client, db, imp, segment):
    data = {f"col-{k}": v for k, v in imp.mapping.items()} | {"match_key": "email", "mode": "upsert", "skip_erased": "on",
                                                             "start": "1", "segment-segment": segment}
    return client.post(detail(db, imp), data)


def run_import(db, csv_text, mode="upsert", **extra):
    data = csv_text.encode()
    info = sniff(io.BytesIO(data), size=len(data))
    opts = Options(auto_mapping(info.headers, writable_fields(db)), "email", mode, extra=extra)
    return import_file(database=db, file=io.BytesIO(data), info=info, options=opts, source="import:7",
                       actor_label="alice@acme.test")


# --- the UI --------------------------------------------------------------------------------------


def test_the_mapping_step_offers_the_databases_static_segments_only(login, alice, shop, vips, berliners, globex_static):
    client = login(alice)
    imp = upload(client, shop)
    text = client.get(detail(shop, imp)).content.decode()
    assert 'data-testid="import-segment"' in text and "Add the imported profiles to a segment" in text
    assert f'<option value="{vips.pk}">VIPs</option>' in text and "Do not add to a segment" in text
    assert f'<option value="{berliners.pk}"' not in text and "Berliners" not in text and "Globex list" not in text


def test_without_static_segments_the_option_says_so(login, alice, shop, berliners):
    client = login(alice)
    imp = upload(client, shop)
    text = client.get(detail(shop, imp)).content.decode()
    assert "This database has no static segments yet." in text and 'name="segment-segment"' not in text


def test_an_import_adds_its_profiles_and_its_page_shows_what_it_did(login, alice, shop, vips, make_profile,
                                                                    django_capture_on_commit_callbacks):
    anna = make_profile(email="anna@shop.example.com")
    make_profile(email="other@shop.example.com")
    segment_members_add(segment=vips, profile_ids=[anna.pk], actor=SYSTEM)
    client = login(alice)
    imp = upload(client, shop)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_start(client, shop, imp, vips.pk)
    assert response.status_code == 302
    imp.refresh_from_db()
    assert imp.state == "succeeded" and imp.extra == {"segment": {"segment": vips.pk}}
    assert imp.extra_results["segment"] == {"segment": "VIPs", "segment_id": vips.pk, "named": 3, "added": 2, "already": 1}
    assert members(vips) == {"anna@shop.example.com", "carl@shop.example.com", "dora@shop.example.com"}
    vips.refresh_from_db()
    assert vips.size == 3
    event = AuditEvent.objects.filter(verb="segment.members_added", target_id=str(vips.pk)).latest("pk")
    assert event.actor == alice and event.data == {"added": 2, "asked": 3, "source": f"import:{imp.job_id}"}
    page = client.get(detail(shop, imp)).content.decode()
    assert 'data-testid="import-segment-result"' in page
    assert 'data-count="added">2<' in page and 'data-count="already">1<' in page
    assert reverse("segments:detail", args=[vips.pk]) in page


def test_without_a_segment_the_import_adds_nobody(login, alice, shop, vips, django_capture_on_commit_callbacks):
    client = login(alice)
    imp = upload(client, shop)
    with django_capture_on_commit_callbacks(execute=True):
        post_start(client, shop, imp, "")
    imp.refresh_from_db()
    assert imp.state == "succeeded" and imp.extra == {} and not SegmentMember.objects.exists()
    assert 'data-testid="import-segment-result"' not in client.get(detail(shop, imp)).content.decode()


@pytest.mark.parametrize("which", ["berliners", "globex_static"])
def test_the_ui_refuses_a_dynamic_or_another_databases_segment(login, alice, shop, which, request,
                                                             django_capture_on_commit_callbacks):
    segment = request.getfixturevalue(which)
    client = login(alice)
    imp = upload(client, shop)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_start(client, shop, imp, segment.pk)
    assert response.status_code == 400 and "Add the imported profiles to a segment: check the highlighted fields" in \
        response.content.decode()
    imp.refresh_from_db()
    assert imp.state == "uploaded" and not SegmentMember.objects.exists()


def test_a_segment_deleted_before_the_import_runs_fails_it_with_why(login, alice, shop, vips,
                                                                    django_capture_on_commit_callbacks):
    client = login(alice)
    imp = upload(client, shop)
    with django_capture_on_commit_callbacks() as callbacks:
        assert post_start(client, shop, imp, vips.pk).status_code == 302
    segment_delete(segment=vips, actor=SYSTEM)
    for callback in callbacks:
        callback()
    imp.refresh_from_db()
    assert imp.state == "failed" and "segment no longer exists" in imp.error
    assert not SegmentMember.objects.exists()


# --- the hook itself -----------------------------------------------------------------------------


def test_the_hook_refuses_a_segment_that_is_not_static_not_of_this_database_or_gone(shop, vips, berliners,
                                                                                  globex_static):
    csv_text = "email\nanna@shop.example.com\n"
    with pytest.raises(ImportMappingError, match="“Berliners” is dynamic"):
        run_import(shop, csv_text, segment={"segment": berliners.pk})
    with pytest.raises(ImportMappingError, match="pick a segment of Shop customers"):
        run_import(shop, csv_text, segment={"segment": globex_static.pk})
    with pytest.raises(ImportMappingError, match="no longer exists"):
        run_import(shop, csv_text, segment={"segment": 10**9})
    with pytest.raises(ImportMappingError, match="expected the id of a static segment"):
        run_import(shop, csv_text, segment="VIPs")
    segment_update(segment=vips, actor=SYSTEM, kind="dynamic", conditions=group(field("city", "eq", "Berlin")))
    with pytest.raises(ImportMappingError, match="“VIPs” is dynamic"):
        run_import(shop, csv_text, segment={"segment": vips.pk})
    assert not SegmentMember.objects.exists()


def test_running_twice_adds_nobody_twice_and_add_only_mode_adds_the_new_profiles(shop, vips, make_profile):
    make_profile(email="old@shop.example.com")
    first = run_import(shop, CSV, segment={"segment": vips.pk})
    assert (first.extra["segment"]["added"], first.extra["segment"]["already"]) == (3, 0)
    again = run_import(shop, CSV, segment={"segment": vips.pk})
    assert (again.extra["segment"]["added"], again.extra["segment"]["already"]) == (0, 3)
    insert = run_import(shop, "email\nold@shop.example.com\nnew@shop.example.com\n", mode="insert", segment={"segment": vips.pk})
    assert (insert.created, insert.extra["segment"]["named"], insert.extra["segment"]["added"]) == (1, 1, 1)
    assert "old@shop.example.com" not in members(vips) and "new@shop.example.com" in members(vips)
    vips.refresh_from_db()
    assert vips.size == 4 == SegmentMember.objects.filter(segment_id=vips.pk).count()


# --- the command line ----------------------------------------------------------------------------


def test_the_command_adds_to_a_segment_with_the_segment_flag(acme, shop, vips, tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_text("email\nanna@shop.example.com\ncarl@shop.example.com\n")
    call_command("import_profiles", str(path), "--segment", vips.slug, account=acme.slug, database=shop.slug)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == "created=2 updated=0 unchanged=0 failed=0"
    assert out[-1].startswith("segment: ") and "added=2" in out[-1] and "already=0" in out[-1]
    assert members(vips) == {"anna@shop.example.com", "carl@shop.example.com"}
    event = AuditEvent.objects.get(verb="segment.members_added")
    assert event.actor is None and event.data["source"] == "import:command"


@pytest.mark.parametrize(("flag", "message"), [
    ("nope", r"No segment 'nope' in Shop customers \(its static segments: vips\)"),
    ("berliners", "'Berliners' is dynamic, not static"),
    ("globex-list", "No segment 'globex-list'"),
])
def test_the_command_explains_a_bad_segment_flag(acme, shop, vips, berliners, globex_static, tmp_path, flag, message):
    path = tmp_path / "people.csv"
    path.write_text("email\nanna@shop.example.com\n")
    with pytest.raises(CommandError, match=message):
        call_command("import_profiles", str(path), "--segment", flag, account=acme.slug, database=shop.slug)
    assert not SegmentMember.objects.exists()


def test_a_segment_changed_after_the_check_is_reported_not_filled(shop, berliners, monkeypatch):
    # Between the import's check and its run (another transaction), the segment may change kind.
    from dataclasses import replace

    from profiles.importing.hooks import IMPORT_HOOKS

    monkeypatch.setitem(IMPORT_HOOKS, "segment", replace(IMPORT_HOOKS["segment"], check=lambda database, options: []))
    result = run_import(shop, CSV, segment={"segment": berliners.pk})
    assert result.created == 3 and result.extra["segment"]["added"] == 0
    assert "“Berliners” is dynamic" in result.extra["segment"]["problem"] and not SegmentMember.objects.exists()
