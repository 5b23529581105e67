"""(being written this session)"""

from __future__ import annotations

from django.http import Http404


def profile_list(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def profile_export(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def profile_create_view(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def profile_detail(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def profile_merge_view(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def profile_erase_view(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404
