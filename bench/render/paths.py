"""The two paths the render benchmark compares, on the same seeded data: the project's (content's
compiled render, delivery's MIME and DKIM) and the naive Django one (premailer, EmailMultiAlternatives,
dkimpy). See the package docstring."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from bench.harness import Timer
from bench.render.data import DOMAIN, HTML, PREHEADER, SIGNED_HEADERS, SUBJECT, Seeded

BATCH = 500  # subscriptions a query, as a mailing batch loads them


# --- the baseline: what an application that "just uses Django" does -----------------------------


def _quiet_cssutils() -> None:
    import logging

    import cssutils

    cssutils.log.setLevel(logging.CRITICAL)  # premailer's parser warns about every vendor property


@dataclass
class BaselineRun:
    seconds: float
    messages: list[bytes]
    steps: dict[str, float]  # seconds per step, summed over the messages (loading is not a step)


def baseline_messages(seeded: Seeded, limit: int) -> BaselineRun:
    """The first `limit` messages the naive way, signed. The steps are timed inside the loop: a
    clock read costs ~0.1 us against ~10 ms a message."""
    import re

    import dkim
    import jinja2
    import premailer
    from django.core.mail import EmailMultiAlternatives
    from django.core.mail.message import make_msgid
    from django.utils.html import strip_tags

    from history.tracking import Claims, click_url
    from resources.models import Subscription
    from resources.tokens import list_unsubscribe_headers, preferences_url, unsubscribe_url

    _quiet_cssutils()
    env = jinja2.Environment(loader=jinja2.DictLoader(seeded.fragments), autoescape=True)
    subject_t, preheader_t, html_t = env.from_string(SUBJECT), env.from_string(PREHEADER), env.from_string(HTML)
    link_ids = {link["url"]: link["id"] for link in seeded.version.links}
    href = re.compile(r'href="(https?://[^"]+)"')
    sender = f"{seeded.sender.from_name} <{seeded.sender.from_address}>"
    account = {"name": seeded.account.name, "timezone": seeded.account.timezone, "language": seeded.account.language}
    resource = {"name": seeded.resource.name, "slug": seeded.resource.slug}
    include = [h.encode() for h in SIGNED_HEADERS]
    out: list[bytes] = []
    steps = dict.fromkeys(("tokens", "render", "premailer", "links", "text", "mime", "dkim"), 0.0)
    clock = time.perf_counter
    with Timer() as t:
        qs = (Subscription.objects.for_account(seeded.account).filter(resource=seeded.resource, channel="email",
                                                                       status="subscribed")
              .select_related("profile").order_by("id"))
        last = 0
        while len(out) < limit:
            batch = list(qs.filter(id__gt=last)[: min(BATCH, limit - len(out))])
            if not batch:
                break
            last = batch[-1].pk
            for sub in batch:
                p = sub.profile
                t0 = clock()
                profile = {"first_name": p.first_name, "last_name": p.last_name, "email": p.email,
                           "birthday": p.birthday, **p.data}
                ctx = {"profile": profile, "account": account, "resource": resource,
                       "subscription": {"channel": sub.channel, "address": sub.address, "status": sub.status},
                       "links": {"unsubscribe": unsubscribe_url(sub), "preferences": preferences_url(sub)}}
                t1 = clock()
                subject = subject_t.render(ctx)
                ctx["subject"] = subject
                html = html_t.render(ctx)
                preheader = preheader_t.render(ctx)
                html = html.replace("<body>", f'<body><div class="preheader">{preheader}</div>', 1)
                t2 = clock()
                html = premailer.Premailer(html, allow_network=False, cssutils_logging_level="CRITICAL").transform()
                t3 = clock()
                claims = Claims(account_id=seeded.account.pk, profile_id=p.pk, ledger_id=sub.pk,
                                resource_id=seeded.resource.pk, sent_at=int(time.time()))
                html = href.sub(lambda m, c=claims: f'href="{_tracked(m.group(1), link_ids, c, click_url)}"', html)
                t4 = clock()
                text = strip_tags(html)
                t5 = clock()
                msg = EmailMultiAlternatives(subject, text, sender, [sub.address],
                                             headers={"Message-ID": make_msgid(f"L{sub.pk}", domain=DOMAIN),
                                                      **list_unsubscribe_headers(sub)})
                msg.attach_alternative(html, "text/html")
                raw = msg.message().as_bytes(linesep="\r\n")
                t6 = clock()
                sig = dkim.sign(raw, seeded.selector.encode(), DOMAIN.encode(), seeded.private_pem,
                                canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
                out.append(sig + raw)
                t7 = clock()
                for name, a, b in (("tokens", t0, t1), ("render", t1, t2), ("premailer", t2, t3), ("links", t3, t4),
                                   ("text", t4, t5), ("mime", t5, t6), ("dkim", t6, t7)):
                    steps[name] += b - a
    return BaselineRun(seconds=t.seconds, messages=out, steps=steps)


def _tracked(url: str, link_ids: dict[str, int], claims: Any, click_url: Callable[..., str]) -> str:
    """The click-tracking URL of a catalogued link (premailer leaves &amp; in hrefs), else the URL."""
    import html as htmllib

    link_id = link_ids.get(htmllib.unescape(url))
    return url if link_id is None else click_url(claims, link_id)


# --- the project path --------------------------------------------------------------------------

ROWS_SQL = """
    SELECT s.id, s.address, p.id, p.email, p.phone, p.first_name, p.last_name, p.birthday, p.gender, p.timezone, p.data
    FROM resources_subscription s JOIN profiles_profile p ON p.id = s.profile_id
    WHERE s.account_id = %s AND s.status = 'subscribed' AND s.id IN ({ids})
    ORDER BY s.id"""


def subscription_ids(seeded: Seeded, limit: int) -> list[int]:
    """The first `limit` subscribed e-mail subscriptions of the resource, by id: what a mailing
    run plans (its ledger rows) before the batches go out."""
    from resources.models import Subscription

    qs = Subscription.objects.for_account(seeded.account).filter(resource=seeded.resource, channel="email",
                                                                  status="subscribed")
    return list(qs.order_by("id").values_list("id", flat=True)[:limit])


def load_rows(seeded: Seeded, ids: list[int]) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of (subscription, profile) rows for these subscription ids, BATCH at a time, ONE
    query a batch, the profile's data decoded: what a mailing batch loads for its ledger ids."""
    import json

    for lo in range(0, len(ids), BATCH):
        batch = ids[lo: lo + BATCH]
        with connection.cursor() as cur:
            cur.execute(ROWS_SQL.format(ids=",".join(["%s"] * len(batch))), [seeded.account.pk, *batch])
            rows = cur.fetchall()
        yield [(*r[:-1], json.loads(r[-1]) if isinstance(r[-1], str) else r[-1]) for r in rows]


@dataclass
class ProjectPath:
    """Everything the project path sets up once per worker: the compiled version, the signer, the
    project's link makers (history.tracking.ClickLinks, resources.tokens.LinkMaker: routes reversed
    and keys derived once), the plain account and resource dicts. `message(row)` builds one signed
    e-mail."""

    seeded: Seeded
    cv: Any = None
    signer: Any = None
    clicks: Any = None  # history.tracking.ClickLinks
    subs: Any = None  # resources.tokens.LinkMaker
    account: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    mailto: str = ""
    account_id: int = 0
    resource_id: int = 0
    sent_at: int = 0  # epoch seconds the click tokens carry; stamped per batch

    def __post_init__(self) -> None:
        from content.rendering import account_dict, compiled, resource_dict
        from delivery.dkim import signer_for
        from history.tracking import ClickLinks
        from resources.tokens import LinkMaker

        s = self.seeded
        self.cv = compiled(s.version)
        self.signer = signer_for(s.dkim_key)
        self.clicks = ClickLinks()
        self.subs = LinkMaker()
        self.account = account_dict(s.account)
        self.resource = resource_dict(s.resource)
        self.mailto = f"unsubscribe@{s.sender.domain.bounce_domain}"
        self.account_id, self.resource_id = s.account.pk, s.resource.pk

    def context(self, row: tuple[Any, ...]) -> tuple[dict[str, Any], str, Callable[[int, str], str]]:
        """(render context, one-click URL, click-link maker) of one (subscription, profile) row."""
        from content.rendering import build_context, profile_dict
        from history.tracking import Claims

        sid, address, pid, email, phone, first, last, birthday, gender, tz, data = row
        unsub, one_click, prefs = self.subs.footer(sid, pid)
        profile = profile_dict({"id": pid, "email": email, "phone": phone, "first_name": first, "last_name": last,
                                "birthday": birthday, "gender": gender, "timezone": tz, "data": data})
        ctx = build_context(
            account=self.account, profile=profile, resource=self.resource,
            subscription={"id": sid, "channel": "email", "address": address, "status": "subscribed",
                          "categories": [], "opted_out": []},
            links={"unsubscribe": unsub, "preferences": prefs},
        )
        link = self.clicks.for_message(Claims(account_id=self.account_id, profile_id=pid, ledger_id=sid,
                                              resource_id=self.resource_id, sent_at=self.sent_at))
        return ctx, one_click, link

    def message(self, row: tuple[Any, ...]) -> bytes:
        """One signed e-mail: context, render, compose (MIME + DKIM)."""
        from delivery.compose import compose_email

        ctx, one_click, link = self.context(row)
        rendered = self.cv.render(ctx, link=link)
        out = compose_email(rendered=rendered, sender=self.seeded.sender, to=row[1], ref=f"L{row[0]}",
                            unsubscribe_url=one_click, unsubscribe_mailto=self.mailto, signer=self.signer)
        return out.raw


@dataclass
class ProjectRun:
    seconds: float  # wall clock
    cpu_seconds: float  # this process's CPU time (PostgreSQL's share of loading is not in it)
    count: int
    kept: list[bytes]  # the first messages, signed, for the checks


def project_messages(seeded: Seeded, limit: int, *, keep: int) -> ProjectRun:
    """The project path over the first `limit` subscriptions. Setup that a worker does once
    (compiling the version, loading the key) is outside the clock."""
    path = ProjectPath(seeded)
    kept: list[bytes] = []
    n = 0
    message = path.message
    cpu = time.process_time()
    with Timer() as t:
        for rows in load_rows(seeded, subscription_ids(seeded, limit)):
            path.sent_at = int(time.time())  # per batch, as a mailing batch stamps its messages
            for row in rows:
                raw = message(row)
                n += 1
                if len(kept) < keep:
                    kept.append(raw)
    return ProjectRun(seconds=t.seconds, cpu_seconds=time.process_time() - cpu, count=n, kept=kept)
