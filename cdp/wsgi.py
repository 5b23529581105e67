"""The WSGI application (gunicorn `cdp.wsgi`).

Importing this module also imports the URLconf, and with it every view and API module, and
builds the resolver's reverse map. Django does that on a process's first request otherwise: ~3-4 s
of CPU that the first visitors of every new worker waited for (the load benchmark saw 13 s
answers in its first seconds, three cold workers importing at once beside a broadcast). Run under
`gunicorn --preload` (the Procfile, the Dockerfile, docker-compose) this happens once, in the
master, before it forks: the workers start warm and share those pages of memory. Nothing here
opens a database or Redis connection, so nothing is shared across the fork that must not be
(`warm` closes the database connections anyway, should a URLconf module ever query at import).
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
application = get_wsgi_application()


def warm() -> None:
    """Import every view (the URLconf) and build the URL resolver's maps now, not on the first request."""
    from django.db import connections
    from django.urls import get_resolver

    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018 (imports the URLconf: every view and API module)
    resolver.reverse_dict  # noqa: B018 (builds the reverse map of every namespace)
    connections.close_all()


warm()
