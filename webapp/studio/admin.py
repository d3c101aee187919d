from django.contrib import admin

from webapp.studio.models import Candidate, GenerationRequest


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    readonly_fields = ["index", "text", "finished", "finish_reason", "greeting", "share_token"]


@admin.register(GenerationRequest)
class GenerationRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "query", "status", "checkpoint_name", "created_at"]
    list_filter = ["status", "tone", "length"]
    search_fields = ["query", "user__username"]
    readonly_fields = ["prompt_query", "attempts", "created_at", "started_at", "finished_at"]
    inlines = [CandidateInline]
