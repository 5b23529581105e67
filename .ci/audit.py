"""Dependency audit: pip-audit over the installed environment (`make audit`, a step of .ci/run).

Exit 1 when any installed package has a known vulnerability (the build fails), 0 otherwise.

pip-audit looks every package up in a vulnerability service (PyPI's JSON API by default). When
that service cannot be reached, pip-audit does not fail: it skips each package ("not found on
PyPI") and still prints "No known vulnerabilities found". This script tells the two apart: when
no package at all could be looked up, it says loudly that the audit was SKIPPED (exit 0, so CI on a
machine whose registry is a mirror without that API still runs its tests), or exit 2 when
AUDIT_REQUIRED=1 (a release build must not pass without a real audit). Usage:

    .venv/bin/python .ci/audit.py            # service from pip-audit's default (pypi)
    AUDIT_SERVICE=osv .venv/bin/python .ci/audit.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    service = os.environ.get("AUDIT_SERVICE", "pypi")
    required = os.environ.get("AUDIT_REQUIRED", "") == "1"
    cmd = [str(BIN / "pip-audit"), "--progress-spinner", "off", "--format", "json", "--skip-editable",
           "--vulnerability-service", service]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # noqa: S603 (fixed argv)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _skipped(f"pip-audit did not run: {exc}", required)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        # pip-audit raises (and prints a traceback) when the service's host does not resolve.
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _skipped(f"pip-audit could not reach the {service} vulnerability service ({last[:200]})", required)
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixed})")
    if vulnerable:
        print(f"pip-audit: {len(vulnerable)} of {len(audited)} audited packages have known vulnerabilities")
        return 1
    if not audited:
        return _skipped(f"the {service} vulnerability service answered for none of the {len(deps)} installed "
                        "packages (offline, or a registry mirror without its JSON API)", required)
    skipped = len(deps) - len(audited)
    print(f"pip-audit: no known vulnerabilities in {len(audited)} packages"
          + (f" ({skipped} could not be looked up)" if skipped else ""))
    return 0


def _skipped(why: str, required: bool) -> int:
    print(f"pip-audit: AUDIT SKIPPED: {why}. Nothing was checked; run `make audit` where the "
          "vulnerability service is reachable (AUDIT_REQUIRED=1 makes this an error).")
    return 2 if required else 0


if __name__ == "__main__":
    sys.exit(main())
