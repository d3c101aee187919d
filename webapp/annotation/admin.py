from django.contrib import admin

from webapp.annotation.models import (Assignment, Batch, BatchBuild, Guidelines, HumanPreference, Item, Rating,
                                      Settlement)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "k", "is_open", "created_at")
    list_filter = ("kind", "is_open")


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("item", "annotator", "status", "leased_at", "expires_at", "finished_at")
    list_filter = ("status",)
    raw_id_fields = ("item",)


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ("item", "annotator", "verdict", "weighted_score", "choice", "seconds_spent", "created_at")
    list_filter = ("verdict", "choice")
    raw_id_fields = ("item", "assignment")


admin.site.register(Item, raw_id_fields=("greeting", "greeting_b", "pair"))


@admin.register(BatchBuild)
class BatchBuildAdmin(admin.ModelAdmin):
    list_display = ("batch", "checkpoint_a", "checkpoint_b", "status", "done", "total", "created_at")
    list_filter = ("status",)


@admin.register(HumanPreference)
class HumanPreferenceAdmin(admin.ModelAdmin):
    list_display = ("item", "pair", "decision", "agreement", "created_at")
    list_filter = ("decision",)
    raw_id_fields = ("item", "pair")
admin.site.register(Settlement)
admin.site.register(Guidelines)
