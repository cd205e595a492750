"""A one-field model with ``NotifyOnChange``, declared as documented, and its plain twin.

The tables are created by :mod:`bench.changefeed` with the schema editor (no
migrations): both are ``id integer primary key autoincrement, value integer``.
"""

from __future__ import annotations

from django.db import models

from rohrpost.mixins import NotifyOnChange

__all__ = ["Counter", "ListedCounter", "PlainCounter"]


class Counter(NotifyOnChange, models.Model):
    """Every committed change is pushed to the group ``counter-<pk>`` as ``{"id": pk}``."""

    value = models.IntegerField(default=0)


class ListedCounter(NotifyOnChange, models.Model):
    """Every change goes to one list group, ``counters``, as a list page subscribes."""

    group_name = "counters"
    value = models.IntegerField(default=0)


class PlainCounter(models.Model):
    """The same row without the change feed: the baseline."""

    value = models.IntegerField(default=0)
