"""The history's pages (signed-in team members). Each part keeps its own list:
urls_admin (event types, retention), urls_explore (the event explorer, the card's timeline),
urls_site (website tracking setup)."""

from __future__ import annotations

from history import urls_admin, urls_explore, urls_site

app_name = "history"

urlpatterns = [*urls_explore.urlpatterns, *urls_admin.urlpatterns, *urls_site.urlpatterns]
