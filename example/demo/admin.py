"""The demo in Django's admin: edits made here show up live on the board pages."""

from __future__ import annotations

from django.contrib import admin

from demo.models import Board, Task


@admin.register(Board)
class BoardAdmin(admin.ModelAdmin):
    list_display = ("name", "owner")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("title", "board", "done", "created")
    list_editable = ("done",)
    list_filter = ("board", "done")
