"""HTTP routes of the demo: the board page, logging in and out, Django's admin, the icon."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages (the admin's) that name no icon.
    path("favicon.ico", RedirectView.as_view(url=static("demo/favicon.svg"))),
]
