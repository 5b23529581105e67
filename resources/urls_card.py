"""The profile card's Subscriptions tab: its actions and the consent ledger export (namespace "resources")."""

from __future__ import annotations

from django.urls import path

from resources.views import card

urlpatterns = [
    path("databases/<slug:db>/profiles/<int:pk>/subscriptions/new/", card.subscription_add, name="subscription_add"),
    path("databases/<slug:db>/profiles/<int:pk>/subscriptions/<int:sub>/", card.subscription_change, name="subscription_change"),
    path("databases/<slug:db>/profiles/<int:pk>/consent.csv", card.consent_export, name="consent_export"),
]
