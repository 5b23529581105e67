"""Operability: health and readiness probes, Prometheus metrics, structured logs with request
and job ids, worker heartbeats and tick records, and the system status page for staff.

Modules:
- logs: the request/job id context, the logging filter and JSON formatter, `logging_config()`;
- middleware: X-Request-ID in and out;
- beacons: worker heartbeats and last ticks (Redis when REDIS_URL is set, files under VAR_DIR);
- signals: the Celery hooks that write them and put task ids into the log context;
- probes: the checks behind /readyz; queues: Celery queue lengths and ages;
- metrics: the /metrics exposition; status: the figures of the status page;
- settings_reference: the configuration table of docs/operations.md, generated from settings.py.

Nothing here imports an app above `accounts` at module level: the figures about mailings and
scenarios are read with the apps' models imported inside the functions that need them.
"""
