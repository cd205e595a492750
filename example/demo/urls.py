"""HTTP routes of the demo: the live page and Django's admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
]
