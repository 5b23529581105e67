"""Model constraints: one current version per template and channel, unique numbers, names, keys."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from content.models import Fragment, Template, TemplateVersion


@pytest.fixture
def template(acme) -> Template:
    return Template.objects.create(account=acme, name="Welcome")


def version(template: Template, number: int, *, channel: str = "email", current: bool = False) -> TemplateVersion:
    return TemplateVersion.objects.create(account=template.account, template=template, channel=channel, number=number,
                                          is_current=current)


def test_only_one_version_per_template_and_channel_is_current(template) -> None:
    version(template, 1, current=True)
    version(template, 1, channel="sms", current=True)  # another channel: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        version(template, 2, current=True)
    version(template, 2)  # not current: fine


def test_version_numbers_are_unique_per_template_and_channel(template) -> None:
    version(template, 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        version(template, 1)


def test_template_names_and_fragment_keys_are_unique_per_account(acme, globex, template) -> None:
    Template.objects.create(account=globex, name="Welcome")
    with pytest.raises(IntegrityError), transaction.atomic():
        Template.objects.create(account=acme, name="Welcome")
    Fragment.objects.create(account=acme, key="footer", name="F")
    Fragment.objects.create(account=globex, key="footer", name="F")
    with pytest.raises(IntegrityError), transaction.atomic():
        Fragment.objects.create(account=acme, key="footer", name="G")


def test_querysets_are_scoped_by_account(acme, globex, template) -> None:
    Template.objects.create(account=globex, name="Other")
    assert list(Template.objects.for_account(acme)) == [template]
    assert str(template) == "Welcome"
    v = version(template, 3)
    assert str(v) == "Welcome · E-mail v3"
    assert v.lint_errors == []
