"""(being written this session)"""

from __future__ import annotations

from django.http import Http404


def database_list(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def database_create_view(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def database_settings(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def database_delete_view(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def field_create(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def field_reorder(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def field_edit(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def field_remove_view(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404
