"""Demo content for `manage.py create_demo` (a DEMO_HOOKS entry): a "footer" fragment and a
"Welcome" template with e-mail, SMS, web push and Telegram versions. Idempotent: what exists by
key or name is left as it is."""

from __future__ import annotations

from accounts.access import Actor
from accounts.models import Account, User
from content.models import Fragment, Template
from content.services import fragment_save, template_create, template_version_save
from profiles.demo import DEMO_DB_SLUG
from profiles.models import ProfileDatabase

FOOTER_HTML = """<table role="presentation" width="100%" class="footer"><tr><td>
<p>{{ account.name }} · You get this because you subscribed to {{ resource.name|default("our news") }}.</p>
<p><a href="{{ links.preferences }}">Preferences</a> · <a href="{{ links.unsubscribe }}">Unsubscribe</a></p>
</td></tr></table>"""

WELCOME_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Welcome</title>
<style>
body { margin: 0; background: #f4f4f7; font-family: Helvetica, Arial, sans-serif; }
.card { max-width: 600px; margin: 0 auto; background: #ffffff; padding: 24px; }
h1 { color: #1f2937; font-size: 24px; }
p { color: #374151; font-size: 16px; line-height: 24px; }
.button { background: #2563eb; color: #ffffff; padding: 12px 20px; text-decoration: none; border-radius: 6px; }
.footer p { color: #6b7280; font-size: 12px; }
@media (max-width: 600px) { .card { padding: 12px; } }
</style></head>
<body><div class="card">
<h1>Welcome, {{ profile.first_name|default("friend", true) }}!</h1>
<p>Thanks for joining {{ account.name }}.{% if profile.loyalty_points %} You already have
{{ profile.loyalty_points|number }} {{ profile.loyalty_points|plural("point", "points") }}.{% endif %}</p>
{% if profile.tags %}<p>We picked these for you:</p>
<ul>{% for tag in profile.tags %}<li>{{ tag|title }}</li>{% endfor %}</ul>{% endif %}
<p><a class="button" href="https://shop.example/welcome">Start shopping</a></p>
{% include "footer" %}
</div></body></html>"""

WELCOME = {
    "email": {"subject": "Welcome to {{ account.name }}, {{ profile.first_name|default(\"friend\", true) }}!",
              "preheader": "Your account is ready: here is what to do first.", "html": WELCOME_HTML, "text": ""},
    "sms": {"text": "Welcome to {{ account.name }}, {{ profile.first_name|default(\"friend\", true) }}! "
                    "Reply STOP to opt out."},
    "webpush": {"title": "Welcome, {{ profile.first_name|default(\"friend\", true) }}!",
                "body": "Tap to see today's picks.", "icon": "https://shop.example/icon.png", "image": "",
                "url": "https://shop.example/welcome"},
    "telegram": {"text": "<b>Welcome, {{ profile.first_name|default(\"friend\", true) }}!</b>\nThanks for joining "
                         "{{ account.name }}.", "parse_mode": "HTML",
                 "buttons": [[{"text": "Start shopping", "url": "https://shop.example/welcome"}]]},
}


def demo_content(account: Account, owner: User) -> str:
    actor = Actor(user=owner)
    made = []
    if not Fragment.objects.filter(account=account, key="footer").exists():
        fragment_save(account=account, key="footer", name="Footer", html=FOOTER_HTML, actor=actor,
                      text="{{ account.name }}\nPreferences: {{ links.preferences }}\n"
                           "Unsubscribe: {{ links.unsubscribe }}\n")
        made.append("1 fragment")
    if not Template.objects.filter(account=account, name="Welcome").exists():
        database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
        template = template_create(account=account, name="Welcome", kind=Template.Kind.MARKETING, actor=actor,
                                   database=database, description="Sent when someone subscribes.")
        for channel, data in WELCOME.items():
            template_version_save(template=template, channel=channel, data=data, actor=actor, note="Demo")
        made.append("1 template")
    return "content: " + (", ".join(made) if made else "nothing new")
