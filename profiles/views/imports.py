"""(being written this session)"""

from __future__ import annotations

from django.http import Http404


def import_list(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def import_upload(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def import_detail(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404


def import_errors(request, *args, **kwargs):  # placeholder until this module is written
    raise Http404
