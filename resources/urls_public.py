"""Public pages for subscribers: no login, signed tokens (see resources.tokens).

Mounted at "p/". The names and paths are used by resources.tokens (links in messages) and by
the embeddable subscribe form: keep them stable.
"""

from __future__ import annotations

from django.urls import path

from resources.views import public

app_name = "public"

urlpatterns = [
    path("u/<str:token>/", public.unsubscribe, name="unsubscribe"),
    path("u/<str:token>/one-click/", public.one_click, name="one_click"),
    path("prefs/<str:token>/", public.preferences, name="preferences"),
    path("confirm/<str:token>/", public.confirm, name="confirm"),
    path("subscribe/<str:key>/", public.subscribe, name="subscribe"),
    # Integrations POST here from other sites and scripts; without the slash too, since a redirect
    # to add it would lose the POST body.
    path("subscribe/<str:key>", public.subscribe, name="subscribe_without_slash"),
]
