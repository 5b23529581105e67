"""docs/operations.md's configuration reference is generated from cdp/settings.py and kept current."""

from __future__ import annotations

import re

from cdp.ops import settings_reference as ref


def test_it_fails_when_the_configuration_reference_is_out_of_date():
    document = ref.DOC.read_text()
    assert ref.splice(document, ref.generated()) == document, (
        "docs/operations.md is out of date: run `python -m cdp.ops.settings_reference --write`")


def test_it_lists_every_environment_variable_of_the_settings_with_a_description():
    source = ref.SETTINGS.read_text()
    read = set(re.findall(r"""\.(?:str|bool|int|float|list|db|email_url)\(\s*["']([A-Z_]+)["']""", source))
    variables = {v.name: v for v in ref.parse(source)}
    assert set(variables) == read
    undescribed = [name for name, v in variables.items() if not v.description]
    assert undescribed == [], f"add a comment above these in cdp/settings.py: {undescribed}"


def test_it_takes_name_type_default_section_and_comment_from_the_source():
    source = '''
# --- Things ---------------------------------------------------------
# How many widgets a minute.
WIDGETS = env.int("WIDGETS_PER_MINUTE", default=2 * 60)
GADGETS = env.bool("GADGETS", default=False)

if not DEBUG:
    NAME = env.str("CDP_NAME", default="x")  # the shop's name
PATH = environ.Env().str("CDP_PATH", default=str(BASE / "var"))
'''
    got = {v.name: v for v in ref.parse(source)}
    assert list(got) == ["WIDGETS_PER_MINUTE", "GADGETS", "CDP_NAME", "CDP_PATH"]
    w = got["WIDGETS_PER_MINUTE"]
    assert (w.cast, w.default, w.setting, w.section, w.description) == (
        "int", "`120`", "WIDGETS", "Things", "How many widgets a minute.")
    assert got["GADGETS"].default == "`0`" and got["GADGETS"].description == "Goes with `WIDGETS_PER_MINUTE` above."
    assert got["CDP_NAME"].description == "the shop's name" and got["CDP_NAME"].setting == "NAME"
    assert got["CDP_PATH"].default == "`str(BASE / 'var')`"
    table = ref.render(list(got.values()))
    assert "#### Things" in table and "| `WIDGETS_PER_MINUTE` | integer | `120` | `WIDGETS` | How many widgets a minute. |" in table
