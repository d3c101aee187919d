from django.contrib import admin

from webapp.jobs.models import LogLine, TrainingJob


class LogLineInline(admin.TabularInline):
    model = LogLine
    extra = 0
    readonly_fields = ["created_at", "message"]
    can_delete = False


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "stage", "progress", "created_by", "created_at", "finished_at", "attempts"]
    list_filter = ["status", "kind"]
    readonly_fields = ["slot", "worker", "heartbeat_at", "attempts", "started_at", "finished_at", "created_at"]
    inlines = [LogLineInline]
