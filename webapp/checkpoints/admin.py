from django.contrib import admin, messages

from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, promote_checkpoint


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("name", "preset", "status", "created_at", "promoted_at")
    list_filter = ("status", "preset")
    search_fields = ("name", "run_name")
    readonly_fields = ("status", "promoted_at", "created_at")
    actions = ["promote"]

    @admin.action(description="Promote the selected checkpoint to active")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one checkpoint to promote.", messages.ERROR)
            return
        try:
            promoted = promote_checkpoint(queryset.get())
        except RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{promoted.name} is now active.", messages.SUCCESS)
