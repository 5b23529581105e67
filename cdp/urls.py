from __future__ import annotations

from django.urls import path, re_path

from cdp.api.errors import api_not_found
from cdp.api.v1 import api
from cdp.urls_pages import urlpatterns as page_patterns

# The API's two entries take every path under api/v1/ (the catch-all too) and nothing else; the
# page routes that came before them (dashboard, healthz, ops) match nothing there: resolving is as
# it was. The pages are cdp.urls_pages, the URLconf a Celery worker reverses with (cdp.celery).
#
# The tracking endpoints (t/o/..., t/c/...) are the busiest paths: their include (cdp.urls_pages
# mounts it, for the workers' reversing too) is moved to the front here, so a hit is resolved
# without trying every page pattern first. Nothing else lives under t/, so what resolves where is
# unchanged, and so is reversing.
_TRACKING = [p for p in page_patterns if getattr(p, "namespace", None) == "tracking"]
urlpatterns = [
    *_TRACKING,
    path("api/v1/", api.urls),
    re_path(r"^api/v1/(?P<path>[\s\S]*)$", api_not_found, name="api_not_found"),  # [\s\S]: paths with %0A too
    *(p for p in page_patterns if p not in _TRACKING),
]
