from django.contrib import admin

from webapp.corpus.models import Greeting, Label, PreferencePair, Query


@admin.register(Query)
class QueryAdmin(admin.ModelAdmin):
    list_display = ("id", "text", "created_at")
    search_fields = ("text",)
    readonly_fields = ("content_hash", "created_at")


@admin.register(Greeting)
class GreetingAdmin(admin.ModelAdmin):
    list_display = ("id", "query", "short_text", "source", "checkpoint_name", "origin", "created_at")
    list_filter = ("source", "origin")
    search_fields = ("text", "query__text", "checkpoint_name")
    list_select_related = ("query",)
    raw_id_fields = ("query",)
    readonly_fields = ("content_hash", "created_at")

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text if len(obj.text) <= 50 else obj.text[:49] + "…"


@admin.register(PreferencePair)
class PreferencePairAdmin(admin.ModelAdmin):
    list_display = ("id", "query", "chosen", "rejected", "source", "origin", "created_at")
    list_filter = ("source", "origin")
    search_fields = ("query__text", "chosen__text", "rejected__text")
    list_select_related = ("query", "chosen", "rejected")
    raw_id_fields = ("query", "chosen", "rejected")
    readonly_fields = ("content_hash", "created_at")


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("id", "greeting", "value", "source_kind", "source_name", "created_at")
    list_filter = ("value", "source_kind")
    search_fields = ("greeting__text", "greeting__query__text", "source_name")
    list_select_related = ("greeting",)
    raw_id_fields = ("greeting",)
    readonly_fields = ("created_at",)
