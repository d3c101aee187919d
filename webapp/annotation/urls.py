from django.urls import path

from webapp.annotation import views

app_name = "annotation"

urlpatterns = [
    path("", views.home, name="home"),
    path("batch/<int:batch_id>/", views.annotate, name="annotate"),
    path("batch/<int:batch_id>/undo/", views.undo, name="undo"),
    path("assignment/<int:assignment_id>/submit/", views.submit, name="submit"),
    path("assignment/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("batches/new/", views.batch_create, name="batch-create"),
    path("batches/from-checkpoint/", views.checkpoint_batch_create, name="batch-from-checkpoint"),
    path("builds/<int:build_id>/", views.build_detail, name="build"),
    path("guidelines/", views.guidelines_edit, name="guidelines"),
    path("batch/<int:batch_id>/guidelines/", views.guidelines_edit, name="batch-guidelines"),
    path("review/", views.review, name="review"),
    path("review/<int:item_id>/settle/", views.settle, name="settle"),
    path("alignment/", views.alignment, name="alignment"),
    path("batch/<int:batch_id>/export.jsonl", views.export_batch, name="export"),
    path("export/preferences.json", views.export_preferences, name="export-preferences"),
    path("preferences/record/", views.record_preferences, name="record-preferences"),
    path("import/", views.import_ratings, name="import"),
]
