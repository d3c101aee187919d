from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.core import views as core_views
from webapp.core.accounts import SignInForm

urlpatterns = [
    path("", core_views.status_page, name="status"),
    path("status/parts/", core_views.status_parts, name="status-parts"),
    path("healthz", core_views.healthz, name="healthz"),
    path("home/", core_views.landing, name="landing"),
    path("favicon.ico", core_views.favicon, name="favicon"),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("annotate/", include("webapp.annotation.urls")),
    path("write/", include("webapp.studio.urls")),
    path("v1/", include("webapp.api.urls")),
    path("train/", include("webapp.jobs.urls")),
    path("train/checkpoints/", include("webapp.annotation.checkpoint_urls")),
    path("train/judges/", include("webapp.judges.urls")),
]

handler403 = "webapp.core.views.permission_denied"
