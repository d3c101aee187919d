from django.contrib import admin

from webapp.judges.models import JudgeVersion, PrincipleSet


@admin.register(PrincipleSet)
class PrincipleSetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "created_at", "note")
    search_fields = ("name", "note")


@admin.register(JudgeVersion)
class JudgeVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "principle_set", "is_active", "created_at")
    list_filter = ("kind", "is_active")
