/*! cdp-track.js: sends a website's page views and events to the CDP. No cookies, no dependencies.

EMBED (the CDP's "Website tracking" page has this with your key and server filled in):

  <script>window.cdp=window.cdp||function(){(cdp.q=cdp.q||[]).push(arguments)};cdp('page');</script>
  <script async src="https://cdp.example/static/js/cdp-track.js" data-key="pk_..."
          data-endpoint="https://cdp.example/t/collect/"></script>

  data-key       the resource's public key (not a secret: it only lets a site send events)
  data-endpoint  the collector, to which the key is appended (default: /t/collect/ on the
                 script's own server)

CALLS (the same before and after the script has loaded; an array stub works too:
window.cdp = window.cdp || []; cdp.push(['identify', {...}])):

  cdp('identify', {email: 'ann@example.com'})  who the visitor is, by ONE match key of the
                                               profile database (email, phone, customer_id...)
  cdp('page')                                  page.viewed with url, title and referrer
                                               (call it again on a single-page app's route change)
  cdp('page', {section: 'shoes'})              the same, with properties of your own
  cdp('track', 'cart_abandoned', {sku: 'A-1', price: 19.9})
                                               any type a site may send: order.placed,
                                               form.submitted... or one of the account's own
  cdp('reset')                                 forget the visitor (on signing out)

DELIVERY: events wait until someone is identified (the identity is kept in localStorage, so
later pages know it), then go out in batches: after 2 seconds, at once at 20 events, and with
navigator.sendBeacon when the page is hidden or left. Each event has its own id (random UUID),
so a retry is never stored twice. Bodies are text/plain (no CORS preflight). A failed send is
retried with a growing pause (2 s doubling to a minute, or the server's Retry-After). Events
not sent yet, and those of a visitor not identified yet, are kept in localStorage for the next
page (the latest 200). The CDP stores events only of people who are already profiles: it
never creates one. Events it refuses (an unknown type, wrong properties) are logged to the
console. The script sets and reads no cookie.
*/
(() => {
  "use strict";
  const w = window, d = document;
  const el = d.currentScript || d.querySelector("script[data-key][src*='cdp-track']");
  const key = el && el.dataset.key;
  if (!key || (w.cdp && w.cdp.loaded)) return;
  const url = (el.dataset.endpoint || new URL("/t/collect/", el.src).href).replace(/\/?$/, "/") + encodeURIComponent(key);
  const ID = "cdp:id:" + key, Q = "cdp:q:" + key, BATCH = 20, DELAY = 2000, KEEP = 200;
  const warn = (...a) => w.console && console.warn("cdp:", ...a);

  const load = (k) => { try { return JSON.parse(localStorage.getItem(k)); } catch (e) { return null; } };
  const save = (k, v) => {
    try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, JSON.stringify(v)); } catch (e) { /* private mode, full */ }
  };

  let who = load(ID), queue = load(Q) || [], timer = 0, busy = false, fails = 0, dead = false;
  save(Q, null); // this page sends the stored events now; what is left goes back when it is hidden

  function uuid() {
    const c = w.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    const b = c ? c.getRandomValues(new Uint8Array(16)) : Array.from({ length: 16 }, () => Math.random() * 256 | 0);
    b[6] = b[6] & 15 | 64;
    b[8] = b[8] & 63 | 128;
    const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // Events of an identified visitor carry who they were then; earlier ones get who is known when sent.
  const ready = () => queue.filter((e) => e.profile || who);
  const body = (batch) => JSON.stringify({ events: batch.map((e) => Object.assign({ profile: who }, e)) });
  const drop = (batch) => { const sent = new Set(batch.map((e) => e.id)); queue = queue.filter((e) => !sent.has(e.id)); };

  function schedule(ms) {
    if (dead || busy || !ready().length) return;
    if (timer && (ms || fails)) return; // a send is due already, or we are backing off
    clearTimeout(timer);
    timer = setTimeout(flush, ms);
  }

  async function flush() {
    timer = 0;
    const batch = ready().slice(0, BATCH);
    if (dead || busy || !batch.length) return;
    busy = true;
    let pause = 0;
    try {
      const text = body(batch);
      const r = await fetch(url, {
        method: "POST", body: text, headers: { "Content-Type": "text/plain" },
        credentials: "omit", mode: "cors", keepalive: text.length < 20000, // keepalive bodies are capped at 64 KB
      });
      if (r.status === 404) { dead = true; warn("unknown key", key); }
      else if (r.ok || r.status === 400 || r.status === 413) {
        drop(batch); // answered: the refused ones would be refused again
        fails = 0;
        const a = await r.json().catch(() => null);
        if (a && (a.rejected || a.error)) warn("refused", a.error || (a.results || []).filter((x) => x.error));
      } else {
        pause = 1000 * (+r.headers.get("Retry-After") || 0);
        throw new Error("HTTP " + r.status);
      }
    } catch (e) {
      fails++;
      pause = Math.max(pause, Math.min(60000, DELAY * 2 ** (fails - 1)));
    } finally {
      busy = false;
    }
    if (pause) { timer = setTimeout(flush, pause); return; }
    schedule(ready().length >= BATCH ? 0 : DELAY);
  }

  function add(event, properties) {
    const e = { id: uuid(), event, time: new Date().toISOString(), channel: "web",
      properties: properties && typeof properties === "object" ? properties : {} };
    if (who) e.profile = who;
    queue.push(e);
    if (queue.length > KEEP) queue.splice(0, queue.length - KEEP);
    schedule(ready().length >= BATCH ? 0 : DELAY);
  }

  function run(name, a, b) {
    if (name === "identify") {
      const pair = a && typeof a === "object" && Object.entries(a).find(([, v]) => v != null && v !== "");
      if (!pair) return warn("identify: no match key");
      who = { [pair[0]]: pair[1] };
      save(ID, who);
      schedule(DELAY);
    } else if (name === "page") {
      add("page.viewed", Object.assign({ url: location.href, title: d.title, referrer: d.referrer }, a && typeof a === "object" ? a : {}));
    } else if (name === "track") {
      if (typeof a === "string" && a) add(a, b); else warn("track: no event name");
    } else if (name === "reset") {
      who = null;
      save(ID, null);
      queue = queue.filter((e) => e.profile);
    } else {
      warn("unknown command", name);
    }
  }

  // Hidden or left: beacon what can go, keep the rest for the next page.
  function hide() {
    clearTimeout(timer);
    timer = 0;
    const out = dead ? [] : ready();
    for (let i = 0; i < out.length; i += BATCH) {
      const batch = out.slice(i, i + BATCH);
      try { if (navigator.sendBeacon && navigator.sendBeacon(url, body(batch))) drop(batch); } catch (e) { /* too big */ }
    }
    save(Q, queue.length ? queue : null);
  }
  function show() {
    save(Q, null);
    schedule(DELAY);
  }
  w.addEventListener("pagehide", hide);
  w.addEventListener("pageshow", (e) => e.persisted && show());
  d.addEventListener("visibilitychange", () => (d.visibilityState === "hidden" ? hide() : show()));

  const api = (...args) => run(...args);
  api.push = (...cmds) => cmds.forEach((c) => run(...c));
  api.loaded = true;
  const stub = w.cdp;
  w.cdp = api;
  (Array.isArray(stub) ? stub : (stub && stub.q) || []).forEach((args) => run(...args));
  schedule(DELAY);
})();
