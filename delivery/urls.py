"""The sending pages (admins and owners; the outbox also for marketers): sending domains with their
DNS records and DKIM keys, senders, provider accounts, and the file backend's outbox."""

from __future__ import annotations

from django.urls import path

from delivery.views import domains, outbox, providers, senders

app_name = "delivery"

urlpatterns = [
    path("sending/domains/", domains.domain_list, name="domain_list"),
    path("sending/domains/new/", domains.domain_create, name="domain_create"),
    path("sending/domains/<int:pk>/", domains.domain_detail, name="domain_detail"),
    path("sending/domains/<int:pk>/verify/", domains.domain_verify, name="domain_verify"),
    path("sending/domains/<int:pk>/delete/", domains.domain_delete, name="domain_delete"),
    path("sending/domains/<int:pk>/dkim/generate/", domains.dkim_generate, name="dkim_generate"),
    path("sending/domains/<int:pk>/dkim/rotate/", domains.dkim_rotate, name="dkim_rotate"),
    path("sending/domains/<int:pk>/dkim/<int:key>/remove/", domains.dkim_remove, name="dkim_remove"),
    path("sending/senders/", senders.sender_list, name="sender_list"),
    path("sending/senders/new/", senders.sender_create, name="sender_create"),
    path("sending/senders/<int:pk>/", senders.sender_edit, name="sender_edit"),
    path("sending/senders/<int:pk>/delete/", senders.sender_delete, name="sender_delete"),
    path("sending/providers/", providers.provider_list, name="provider_list"),
    path("sending/providers/new/", providers.provider_create, name="provider_create"),
    path("sending/providers/<int:pk>/", providers.provider_edit, name="provider_edit"),
    path("sending/providers/<int:pk>/delete/", providers.provider_delete, name="provider_delete"),
    path("sending/providers/<int:pk>/default/", providers.provider_default, name="provider_default"),
    path("sending/providers/<int:pk>/test/", providers.provider_test, name="provider_test"),
    path("sending/providers/<int:pk>/vapid/", providers.provider_vapid, name="provider_vapid"),
    path("sending/outbox/", outbox.outbox_list, name="outbox"),
    # A message is the file backend's "<day>/<file>" id (delivery.outbox), in the account's directory.
    path("sending/outbox/<slug:day>/<str:name>/", outbox.outbox_message, name="outbox_message"),
    path("sending/outbox/<slug:day>/<str:name>/html/", outbox.outbox_html, name="outbox_html"),
    path("sending/outbox/<slug:day>/<str:name>/raw/", outbox.outbox_raw, name="outbox_raw"),
]
