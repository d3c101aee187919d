from django.contrib import admin, messages
from django.utils import timezone

from webapp.api.models import ApiKey
from webapp.api.keys import KEY_PREFIX, hash_key


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "user__username")
    fields = ("user", "name", "rate_limit_per_minute", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if not change:  # a new key: make the secret here and show it once
            import secrets

            secret = KEY_PREFIX + secrets.token_urlsafe(32)
            obj.prefix, obj.hashed_key = secret[:10], hash_key(secret)
            super().save_model(request, obj, form, change)
            self.message_user(request, f"The new API key (copy it now, it is not shown again): {secret}",
                              messages.WARNING)
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)
