"""The demo segments: made over the demo shop, one of each kind, idempotent."""

from __future__ import annotations

import pytest

from segments.models import Segment, SegmentMember

pytestmark = pytest.mark.django_db


def test_demo_segments_are_one_of_each_kind_with_members_and_idempotent(acme, olivia, django_capture_on_commit_callbacks):
    from history.demo import demo_history
    from profiles.demo import demo_profiles
    from resources.demo import demo_resources
    from segments.demo import demo_segments

    demo_profiles(acme, olivia)
    demo_resources(acme, olivia)
    demo_history(acme, olivia)
    with django_capture_on_commit_callbacks(execute=True):  # their first calculations (tasks)
        assert demo_segments(acme, olivia) == "segments: 3 made"
    segments = {s.slug: s for s in Segment.objects.for_account(acme)}
    assert {s.kind for s in segments.values()} == {"static", "dynamic", "updatable"}
    assert all(s.state == Segment.State.OK for s in segments.values())
    assert segments["gold-snapshot"].size and SegmentMember.objects.filter(segment=segments["gold-snapshot"]).exists()
    assert segments["berlin-vips"].size is not None and segments["berlin-vips"].last_computed_at
    assert demo_segments(acme, olivia) == "segments: 0 made"
