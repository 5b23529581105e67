"""render: personalised e-mails rendered, built and DKIM-signed, against the naive Django path.

Data (seeded, set-based with bulk_create so the smoke test runs it on SQLite too): one account
("Bench render", Europe/Berlin) with the profile database "Shop" of `size` profiles (first and last
name, e-mail, a birthday, and the custom fields city, loyalty_points and recommended: three
products with name, price, url and image), the resource "Shop news" with a subscribed e-mail
subscription for every profile; the fragments "header" and "footer" and a marketing template
(~6 KB of HTML, a <style> block of ~40 rules, ~10 variables, one {% for %} over the products, one
{% if %}, 8 static links and the unsubscribe and preference links) saved through content's
`template_version_save` (which inlines the CSS once and catalogues the links); the sending domain
shop.example with an RSA-2048 DKIM key and a sender made through delivery's services.

Project path (one process, one thread, timed from the first query to the last signature): the
subscription ids planned in one query (what a mailing run's ledger holds), then batches of 500,
ONE query a batch loading the subscriptions with their profiles; per message the plain context
(`content.rendering.profile_dict` + `build_context`, the unsubscribe, one-click and preference URLs
from `resources.tokens.LinkMaker.footer`), `compiled(version).render(ctx, link=...)` with click
tracking (a token per catalogued link from `history.tracking.ClickLinks.for_message`), and
`delivery.compose.compose_email` (`delivery.mime.build_email` + `delivery.dkim` with the key object
cached per worker). What a worker does once (compiling the version, loading the key, building the
link makers: routes reversed and keys derived once, ~2 us a URL after that) is outside the clock,
after a warm-up. The link makers are the project's own (`click_url` and `unsubscribe_url` take the
same path, byte for byte); `check_links` reads the first messages' tokens back with the project's
readers before anything is timed, so a mis-wired claim cannot go unnoticed.

Baseline, on the same template sources, fragments and profiles (what an application that "just
uses Django" does): the subscriptions through the ORM (`select_related("profile")`, 500 at a
time), the same Jinja sources rendered with a plain `jinja2.Environment` (compiled once, as
Django's cached loader would: this favours the baseline), the CSS inlined per message with
premailer (remote stylesheets off, no network), the links rewritten per message with
`history.tracking.click_url`, the unsubscribe links from `resources.tokens`, the text part with
`django.utils.html.strip_tags`, `django.core.mail.EmailMultiAlternatives` built per message and
signed with dkimpy (`dkim.sign`). It costs 10-30 ms a message, so it runs on the first
BASELINE_SAMPLE subscriptions (a deterministic sample) and its time is scaled to `size` (a detail
line says so).

Checks (a fast wrong answer is not a result): VERIFY_SAMPLE project messages and five baseline
messages pass dkimpy's verifier against a local DNS function serving the key's TXT record; the
project's messages have the baseline's subject and recipient, greet their profile in both parts,
carry the 8 catalogued links tracked, the unsubscribe link and the RFC 8058 headers. Any failure
aborts the run.

Detail lines: msgs/s by the wall clock and by this process's CPU time (the machine is shared);
per-phase microseconds a message over the first PHASE_SAMPLE messages, each phase run on its own
(fastest of PHASE_REPEATS): load, context (links: the unsubscribe/preference URLs alone), render
(all parts; text: the text part alone), compose (mime, dkim; rsa: the RSA-2048 signature alone)
and no_rsa (the whole per-message path with a key that skips RSA: what the 2,500/s target leaves
~40 us for). BENCH_RENDER_PROFILE=1 adds a cProfile of the project path (top 25 by own time).
Result: project_s = the project path for `size` messages, baseline_s = the baseline's time scaled
to `size`, rate = project messages a second. Targets: ratio <= 0.1, rate >= 2,500 on one core.
"""

from __future__ import annotations

import os

from bench.harness import Result, detail, register
from bench.render.data import Seeded, cleanup, seed  # noqa: F401 - the smoke test's entry points
from bench.render.measure import (
    PHASE_REPEATS,
    check_links,
    check_messages,
    phases,
    profile_top,
    verify,
)
from bench.render.paths import BaselineRun, ProjectRun, baseline_messages, project_messages  # noqa: F401

BASELINE_SAMPLE = 2_000  # messages the baseline really builds; its time is scaled to the size
PHASE_SAMPLE = 2_000  # messages the per-phase breakdown runs over
VERIFY_SAMPLE = 20  # project messages checked with dkimpy's verifier
TARGET_RATIO = 0.1
TARGET_RATE = 2_500


@register("render", small_size=2_000)
def run(size: int) -> Result:
    """Personalised e-mails rendered + MIME + DKIM-signed (RSA-2048) vs the naive Django path."""
    cleanup()
    seeded = seed(size)
    try:
        check_links(seeded)
        project_messages(seeded, min(size, 200), keep=0)  # warm-up: the first calls import and fill caches
        project = project_messages(seeded, size, keep=VERIFY_SAMPLE)
        project_s, n, kept = project.seconds, project.count, project.kept
        if n != size:
            raise RuntimeError(f"the project path built {n} messages for {size} subscriptions")
        rate = n / project_s
        detail(f"project: {n:,} messages in {project_s:.2f}s = {rate:,.0f} msgs/s ({project_s / n * 1e6:.0f} us a "
               f"message; one process, one thread); CPU {project.cpu_seconds:.2f}s = "
               f"{n / project.cpu_seconds:,.0f} msgs/s of this process's CPU time")
        sample = min(size, BASELINE_SAMPLE)
        baseline = baseline_messages(seeded, sample)
        baseline_s, base_msgs = baseline.seconds, baseline.messages
        scaled = baseline_s * size / sample
        detail(f"baseline: {sample:,} messages (the first {sample:,} subscriptions by id: a deterministic sample) in "
               f"{baseline_s:.2f}s = {baseline_s / sample * 1e3:.2f} ms a message; scaled to {size:,}: {scaled:.1f}s")
        detail("baseline steps us/msg: " + " ".join(f"{k}={v / sample * 1e6:.0f}" for k, v in baseline.steps.items())
               + " (tokens: resources.tokens URLs; links: click_url per link; text: strip_tags; dkim: dkimpy)")
        verify(seeded, kept, label="project")
        verify(seeded, base_msgs[:5], label="baseline")
        check_messages(kept, base_msgs)
        us = phases(seeded, min(size, PHASE_SAMPLE))
        order = ("load", "context", "links", "render", "text", "compose", "mime", "dkim", "rsa", "no_rsa")
        detail("phases us/msg: " + " ".join(f"{k}={us[k]:.1f}" for k in order if k in us))
        detail(f"  (fastest of {PHASE_REPEATS} runs over {min(size, PHASE_SAMPLE):,} messages; load is wall clock, "
               "the rest CPU time of this process; links is within context, text within render, mime + dkim "
               "within compose, rsa within dkim; no_rsa is context + render + compose with a key that does not "
               "compute RSA)")
        beyond = us["load"] + us["no_rsa"]
        detail(f"beyond the RSA signature: {beyond:.1f} us a message (load + no_rsa); with the RSA signature "
               f"({us['rsa']:.0f} us here) that is {1e6 / (beyond + us['rsa']):,.0f} msgs/s; 2,500 msgs/s leaves "
               f"{1e6 / TARGET_RATE - us['rsa']:.0f} us beside it")
        if os.environ.get("BENCH_RENDER_PROFILE") == "1":
            profile_top(seeded, min(size, PHASE_SAMPLE))
        ratio = project_s / scaled
        detail(f"targets: ratio {ratio:.3f} {'ok' if ratio <= TARGET_RATIO else 'OVER'} (<= {TARGET_RATIO}); "
               f"rate {rate:,.0f} {'ok' if rate >= TARGET_RATE else 'UNDER'} (>= {TARGET_RATE:,} msgs/s on one core)")
    finally:
        cleanup()
    return Result(size=size, project_s=project_s, baseline_s=scaled, rate=rate)
