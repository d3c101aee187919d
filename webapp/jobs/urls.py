from django.urls import path

from webapp.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("start/", views.start, name="start"),
    path("start/<slug:kind>/", views.start_kind, name="start-kind"),
    path("start/<slug:kind>/upload/", views.upload, name="upload"),
    path("jobs/<int:pk>/", views.detail, name="detail"),
    path("jobs/<int:pk>/live/", views.live, name="live"),
    path("jobs/<int:pk>/cancel/", views.cancel, name="cancel"),
]
