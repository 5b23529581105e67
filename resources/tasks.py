"""Thin Celery tasks for resources: take ids, call a service."""

from __future__ import annotations

from celery import shared_task

from resources.services import subscriptions_resume_due


@shared_task
def subscriptions_resume_task() -> int:
    """Paused subscriptions whose pause has ended are subscribed again (beat: every 5 minutes)."""
    return subscriptions_resume_due()
