"""Smoke test of `python -m bench render`'s core at a tiny size (no timing assertions): the data
set-up through the real services, the project path and the naive baseline on the same
subscribers, the link makers checked against the project's own functions, DKIM verification,
and the per-phase breakdown. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bench import render

pytestmark = pytest.mark.django_db

SIZE = 50


@pytest.fixture
def seeded():
    return render.seed(SIZE)


def test_it_builds_a_verified_signed_message_for_every_subscriber(seeded):
    render.check_links(seeded)
    run = render.project_messages(seeded, SIZE, keep=SIZE)
    assert run.count == SIZE and len(run.kept) == SIZE
    render.verify(seeded, run.kept, label="project")
    assert len({m.split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0] for m in run.kept}) == SIZE  # one per subscriber


def test_it_matches_the_naive_django_path_on_the_same_subscribers(seeded):
    project = render.project_messages(seeded, 3, keep=3).kept
    baseline = render.baseline_messages(seeded, 3)
    assert len(baseline.messages) == 3 and all(v > 0 for v in baseline.steps.values())
    render.verify(seeded, baseline.messages, label="baseline")
    render.check_messages(project, baseline.messages)


def test_it_refuses_a_message_that_is_not_the_one_the_baseline_built_for_that_subscriber(seeded):
    project = render.project_messages(seeded, 2, keep=2).kept
    baseline = render.baseline_messages(seeded, 2).messages
    with pytest.raises(RuntimeError, match="is wrong"):
        render.check_messages(project[::-1], baseline)


def test_it_refuses_a_message_whose_signature_does_not_verify(seeded):
    kept = render.project_messages(seeded, 1, keep=1).kept
    tampered = kept[0].replace(b"Subject: ", b"Subject: Re: ", 1)
    with pytest.raises(RuntimeError, match="does not pass DKIM verification"):
        render.verify(seeded, [tampered], label="project")


def test_it_reports_every_phase_of_the_project_path(seeded):
    us = render.phases(seeded, 10)
    assert {"load", "context", "links", "render", "text", "compose", "mime", "dkim", "rsa", "no_rsa"} <= set(us)
    assert all(v > 0 for v in us.values())
