from __future__ import annotations

import re

import pytest
from django.test import RequestFactory
from django.utils import timezone

from accounts.models import Job
from cdp.tables import Column, Filter, Table


def _table(qs, params="", **kw):
    request = RequestFactory().get("/jobs/" + (f"?{params}" if params else ""))
    kw.setdefault("columns", [Column("Title", sort="title"), Column("Created", sort="created_at")])
    return Table(request, qs, row_template="x.html", per_page=10, **kw)


def _walk(qs, sort: str, direction: str = "next") -> list[int]:
    """Every id, following next links from the first page."""
    seen: list[int] = []
    params = f"sort={sort}"
    for _ in range(50):
        t = _table(qs, params, default_sort="-created_at")
        seen += [r.pk for r in t.rows]
        if not t.next_url:
            return seen
        params = t.next_url.split("?", 1)[1]
    raise AssertionError("pagination did not end")


@pytest.fixture
def jobs(acme):
    now = timezone.now()
    # Many ties on both sort keys: the cursor must break them by id.
    Job.objects.bulk_create(
        [Job(account=acme, kind="k", title=f"job {i % 4}", created_at=now.replace(microsecond=0) if i % 3 else now) for i in range(37)]
    )
    return Job.objects.for_account(acme)


@pytest.mark.parametrize("sort", ["title", "-title", "created_at", "-created_at"])
def test_keyset_pages_cover_every_row_once_in_order(jobs, sort):
    seen = _walk(jobs, sort)
    field = sort.lstrip("-")
    expected = list(jobs.order_by(sort, ("-" if sort.startswith("-") else "") + "pk").values_list("pk", flat=True))
    assert seen == expected
    assert field


def test_previous_goes_back_to_the_same_page(jobs):
    first = _table(jobs, "sort=title", default_sort="-created_at")
    second = _table(jobs, first.next_url.split("?", 1)[1], default_sort="-created_at")
    back = _table(jobs, second.prev_url.split("?", 1)[1], default_sort="-created_at")
    assert [r.pk for r in back.rows] == [r.pk for r in first.rows]
    assert not back.prev_url and back.next_url


def test_search_filters_and_bounded_count(jobs):
    t = _table(jobs, "q=job+2", search_fields=["title"])
    assert all(r.title == "job 2" for r in t.rows)
    assert t.count_label.endswith("results")
    limited = _table(jobs, count_limit=20)
    assert limited.count_label == "20+ results"
    f = _table(jobs, "state=queued", filters=[Filter("state", "State", Job.State.choices)])
    assert len(f.rows) == 10
    ignored = _table(jobs, "state=bogus", filters=[Filter("state", "State", Job.State.choices)])
    assert ignored.active_filters == {}


def test_unknown_sorts_and_mangled_cursors_fall_back_safely(jobs):
    t = _table(jobs, "sort=kind;drop&after=%%%", default_sort="-created_at")
    assert t.sort == "-created_at" and len(t.rows) == 10


def test_a_deep_page_costs_what_the_first_costs(jobs, django_assert_num_queries):
    t = _table(jobs, "sort=title")
    for _ in range(3):
        t = _table(jobs, t.next_url.split("?", 1)[1])
    with django_assert_num_queries(1):
        deep = _table(jobs, t.prev_url.split("?", 1)[1])
    assert re.match(r"^/jobs/\?", deep.next_url)
