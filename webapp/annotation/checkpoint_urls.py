from django.urls import path

from webapp.annotation import checkpoint_pages as views

app_name = "checkpoints"
urlpatterns = [
    path("", views.checkpoint_list, name="list"),
    path("<int:pk>/promote/", views.promote, name="promote"),
    path("rollback/", views.rollback, name="rollback"),
    path("compare/", views.compare, name="compare"),
    path("compare/annotate/", views.send_to_annotation, name="compare-annotate"),
]
