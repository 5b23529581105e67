"""The operations endpoints.

- /healthz: the process is up and serving (no database, no Redis): for liveness probes and
  docker-compose's healthcheck. Always 200.
- /readyz: the service can do its work: database, Redis, workers per queue, the ticks. 200 or
  503 with every check in a JSON body (and the failing ones named). Unauthenticated: the body
  carries no hosts, URLs or error texts, only check names, counts, lags and exception classes.
- /metrics: Prometheus text, for a bearer METRICS_TOKEN or a staff session; 404 otherwise (not
  401/403: an unauthenticated caller learns nothing, not even that the endpoint exists).
- /ops/status: the system status page, for Django staff only (404 otherwise). Staff and not the
  account owners/admins: workers, queues, ticks, stuck jobs and stalled runs are shared by every
  tenant, and the lists name other accounts' jobs and mailings.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cdp.ops import beacons, metrics, probes, queues, status

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: 200 while the process can answer a request. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when every check passes, else 503; the body lists them all."""
    body = probes.summary(probes.readiness())
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; 404 without the bearer token or a staff session."""
    if not _metrics_allowed(request):
        raise Http404
    return HttpResponse(metrics.collect(), content_type=PROMETHEUS_CONTENT_TYPE)


def _staff_or_404(request: HttpRequest) -> None:
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise Http404


@never_cache
@require_GET
def status_page(request: HttpRequest) -> HttpResponse:
    """The system status page (staff only, else 404). Each panel says "unavailable" on its own
    when its source is down, so the page still shows the rest."""
    _staff_or_404(request)
    started = time.monotonic()
    errors: dict[str, str] = {}

    def read(source: str, fn: Callable[[], Any], default: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # show the panel as unavailable, keep the page
            errors[source] = type(exc).__name__
            return default

    checks = probes.readiness()
    workers = read("workers", beacons.workers, {})
    queue_states = read("broker", queues.queue_states, [])
    per_queue: dict[str, list[str]] = {q: [] for q in queues.queue_names()}
    for hostname, record in sorted(workers.items()):
        for q in record.get("queues", []):
            per_queue.setdefault(q, []).append(hostname)
    now = time.time()
    context = {
        "section": "ops_status",
        "summary": probes.summary(checks),
        "checks": checks,
        "workers": [{**record, "hostname": hostname, "age": round(now - record["at"], 1)}
                    for hostname, record in sorted(workers.items())],
        "queues": [{"state": s, "workers": per_queue.get(s.name, [])} for s in queue_states],
        "ticks": read("ticks", status.ticks, []),
        "jobs_stuck": read("jobs", status.jobs_stuck, []),
        "runs_stalled": read("mailings", status.runs_stalled, []),
        "runs_active": read("mailings", status.runs_active, {}),
        "participations": read("scenarios", status.participations_open, {}),
        "participations_failed": read("scenarios", lambda: status.counter_sums()["participations_failed"], None),
        "errors": errors,
        "stuck_minutes": int(getattr(settings, "OPS_JOB_STUCK_MINUTES", 5)),
        "stalled_minutes": int(getattr(settings, "OPS_STALLED_RUN_MINUTES", 10)),
        "heartbeat_ttl": beacons.worker_ttl(),
    }
    context["page_ms"] = round((time.monotonic() - started) * 1000)
    template = "ops/status.html"
    if getattr(request, "htmx", False):
        template += "#panels"
    return render(request, template, context)
