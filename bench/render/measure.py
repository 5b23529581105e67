"""Checks and measurements of the render benchmark: DKIM verification with dkimpy, the project's
messages against the baseline's, the project path's links read back by the project's token readers,
the per-phase breakdown and a cProfile of the project path."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import detail
from bench.render.data import DOMAIN, STATIC_LINKS, Seeded
from bench.render.paths import ProjectPath, load_rows, subscription_ids

PHASE_REPEATS = 3  # runs of each phase; the fastest counts


def verify(seeded: Seeded, messages: list[bytes], *, label: str) -> None:
    """Every message must pass dkimpy's verifier against a local DNS function that serves the
    key's TXT record; raises RuntimeError naming the first that does not."""
    import dkim

    name = f"{seeded.selector}._domainkey.{DOMAIN}.".encode()

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes | None:
        return seeded.txt_record if qname.rstrip(b".") == name.rstrip(b".") else None

    for i, raw in enumerate(messages):
        if not dkim.verify(raw, dnsfunc=dnsfunc):
            raise RuntimeError(f"{label} message {i} does not pass DKIM verification:\n{raw[:2000]!r}")
    detail(f"verified: {len(messages)} {label} messages pass dkimpy's verifier (local DNS)")


def check_links(seeded: Seeded, n: int = 3) -> None:
    """The links of the project path's first `n` messages name what they were made for: each click
    token reads back (history.tracking.read_token) to the message's account, profile, ledger row
    (its subscription here), resource, time of sending and link; the unsubscribe, one-click and
    preference tokens (resources.tokens.read_token) to its subscription and profile. The URLs come
    from the project's own makers (ClickLinks, LinkMaker), so there is nothing else to compare them
    with; this checks the bench's wiring of them. Raises RuntimeError."""
    from history.tracking import Claims, read_token
    from resources import tokens

    path = ProjectPath(seeded)
    path.sent_at = int(time.time())
    link_ids = [link["id"] for link in seeded.version.links]
    for row in next(load_rows(seeded, subscription_ids(seeded, n)), []):
        sid, pid = row[0], row[2]
        ctx, one_click, link = path.context(row)
        for link_id in link_ids:
            want = Claims(account_id=seeded.account.pk, profile_id=pid, ledger_id=sid, resource_id=seeded.resource.pk,
                          link_id=link_id, sent_at=path.sent_at)
            url = link(link_id, "")
            if read_token(url.rsplit("/", 1)[1]) != want:
                raise RuntimeError(f"click link {url} does not name {want}")
        for purpose, url in ((tokens.UNSUBSCRIBE, ctx["links"]["unsubscribe"]), (tokens.UNSUBSCRIBE, one_click),
                             (tokens.PREFERENCES, ctx["links"]["preferences"])):
            token = url.split("/p/", 1)[1].split("/")[1]
            if tokens.read_token(purpose, token) != tokens.TokenData(subscription_id=sid, profile_id=pid):
                raise RuntimeError(f"{purpose} link {url} does not name subscription {sid} of profile {pid}")


def check_messages(project: list[bytes], baseline: list[bytes]) -> None:
    """The project's messages say what the baseline's say to the same subscribers (subject, To),
    carry every catalogued link tracked, the unsubscribe link in both parts, and the RFC 8058
    headers. Raises RuntimeError."""
    from email import message_from_bytes, policy

    for i, (raw, base_raw) in enumerate(zip(project, baseline, strict=False)):
        msg, base = message_from_bytes(raw, policy=policy.default), message_from_bytes(base_raw, policy=policy.default)
        problems = []
        if (str(msg["Subject"]), str(msg["To"])) != (str(base["Subject"]), str(base["To"])):
            problems.append(f"subject/to {msg['Subject']!r} {msg['To']!r} vs the baseline's {base['Subject']!r}")
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        if html.count("/t/c/") != STATIC_LINKS:
            problems.append(f"{html.count('/t/c/')} tracked links in the HTML, expected {STATIC_LINKS}")
        if "/p/u/" not in html or "/p/u/" not in text:
            problems.append("no unsubscribe link in the HTML or the text part")
        if "One-Click" not in str(msg["List-Unsubscribe-Post"]) or "one-click" not in str(msg["List-Unsubscribe"]):
            problems.append("no RFC 8058 List-Unsubscribe headers")
        first_name = str(base["Subject"]).split(",")[0]
        if f"Hello {first_name}" not in html or first_name not in text:
            problems.append(f"the parts do not greet {first_name}")
        if problems:
            raise RuntimeError(f"project message {i} is wrong: {'; '.join(problems)}")
    detail(f"checked: {min(len(project), len(baseline))} project messages match the baseline's subject and "
           f"recipient, with {STATIC_LINKS} tracked links and the unsubscribe links")


# --- per-phase breakdown and profile -------------------------------------------------------------


def phases(seeded: Seeded, n: int) -> dict[str, float]:
    """Microseconds a message per phase, each phase run over the first `n` messages on its own
    (no clock reads inside the loop), the fastest of PHASE_REPEATS runs: load, context (links +
    dicts), links (the unsubscribe and preference URLs alone, within context), render (all parts,
    with the click links), text (the text part alone, within render), compose (mime + dkim + the
    glue), mime, dkim, rsa (the RSA-2048 signature alone, within dkim), and no_rsa (the whole
    per-message path but loading, with a key that does not compute RSA: everything the 2,500/s
    target constrains beside the signature). Loading is timed by the wall clock (PostgreSQL does
    part of it), the rest by this process's CPU time (the machine may be shared)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from jinja2.runtime import Context

    from content.sandbox import begin, end
    from delivery.compose import compose_email
    from delivery.mime import build_email, make_message_id, verp_address

    path = ProjectPath(seeded)
    path.sent_at = int(time.time())
    ids = subscription_ids(seeded, n)
    n = len(ids)
    us: dict[str, float] = {}
    clock = time.perf_counter  # wall clock for loading (PostgreSQL does part of it), CPU time after

    def best(name: str, fn: Callable[[], Any]) -> Any:
        """Run a phase PHASE_REPEATS times; the fastest counts (the machine is shared: the least
        disturbed run is the closest to the code's own cost)."""
        times = []
        for _ in range(PHASE_REPEATS):
            start = clock()
            out = fn()
            times.append(clock() - start)
        us[name] = min(times) / n * 1e6
        return out

    rows = best("load", lambda: [r for batch in load_rows(seeded, ids) for r in batch])
    clock = time.process_time
    prepared = best("context", lambda: [path.context(r) for r in rows])
    subs = path.subs.footer
    best("links", lambda: [subs(r[0], r[2]) for r in rows])
    render = path.cv.render
    rendered = best("render", lambda: [render(ctx, link=link) for ctx, _, link in prepared])
    # The text part alone, the way render() runs each part (content.rendering's internals: the
    # figure is informative and left out if they change).
    text_t = dict(getattr(path.cv, "_templates", [])).get("text")
    pairs = getattr(path.cv, "_link_pairs", None)
    if text_t is not None and pairs is not None:
        contexts = [{**ctx, "_links": [link(i, u) for i, u in pairs]} for ctx, _, link in prepared]

        def text_only() -> None:
            for vars_ in contexts:
                begin()
                try:
                    "".join(text_t.root_render_func(Context(text_t.environment, vars_, None, text_t.blocks)))
                finally:
                    end()

        best("text", text_only)
    sender, domain = seeded.sender, seeded.sender.domain
    best("compose", lambda: [
        compose_email(rendered=r, sender=sender, to=row[1], ref=f"L{row[0]}", unsubscribe_url=one_click,
                      unsubscribe_mailto=path.mailto, signer=path.signer)
        for row, r, (_, one_click, _) in zip(rows, rendered, prepared, strict=True)])
    mailto = f"mailto:{path.mailto}?subject=unsubscribe"
    built = best("mime", lambda: [
        build_email(from_name=sender.from_name, from_addr=sender.from_address, to=row[1],
                    subject=r.parts["subject"], html=r.parts["html"], text=r.parts["text"],
                    message_id=make_message_id(f"L{row[0]}", domain.domain), list_unsubscribe_https=one_click,
                    list_unsubscribe_mailto=mailto, return_path=verp_address(f"L{row[0]}", domain.bounce_domain))
        for row, r, (_, one_click, _) in zip(rows, rendered, prepared, strict=True)])
    sign = path.signer.sign
    best("dkim", lambda: [sign(b) for b in built])
    # Everything but the RSA operation, measured directly: the whole per-message path with a key
    # whose sign() returns a fixed signature. This is the figure the 2,500/s target constrains.
    from cryptography.hazmat.primitives.asymmetric import rsa

    from delivery.dkim import DkimSigner

    rsa.RSAPrivateKey.register(_NoRsaKey)  # idempotent; only this bench process sees it
    no_rsa = ProjectPath(seeded)
    no_rsa.sent_at = path.sent_at
    no_rsa.signer = DkimSigner(domain=domain.domain, selector=seeded.selector, private_key=_NoRsaKey())  # type: ignore[arg-type]
    best("no_rsa", lambda: [no_rsa.message(r) for r in rows])
    key, pkcs, sha = path.signer.private_key, padding.PKCS1v15(), hashes.SHA256()
    data = b"x" * 600  # about the size of the signed header block
    best("rsa", lambda: [key.sign(data, pkcs, sha) for _ in range(n)])
    return us


class _NoRsaKey:
    """Stands in for the RSA key when timing everything but the signature: sign() returns 256
    zero bytes. `phases` registers it as an RSAPrivateKey (an ABC) so delivery.dkim.sign takes it."""

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        return bytes(256)


def profile_top(seeded: Seeded, n: int, top: int = 25) -> None:
    """cProfile of the project path over `n` messages: the `top` functions by own time."""
    import cProfile
    import pstats

    path = ProjectPath(seeded)
    path.sent_at = int(time.time())
    rows = [r for batch in load_rows(seeded, subscription_ids(seeded, n)) for r in batch]
    prof = cProfile.Profile()
    prof.enable()
    for row in rows:
        path.message(row)
    prof.disable()
    stats = pstats.Stats(prof)
    detail(f"profile: cProfile of {len(rows)} messages, top {top} by own time (us a message; cProfile inflates "
           "small calls)")
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in entries:
        where = file.replace(str(Path(__file__).resolve().parents[2]), "").lstrip("/")
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        detail(f"  own={tottime / len(rows) * 1e6:7.1f}us cum={cumtime / len(rows) * 1e6:7.1f}us "
               f"calls/msg={calls / len(rows):5.1f}  {where}:{line} {func}")
