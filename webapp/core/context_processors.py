"""What every page's menu needs: which sections the user's role may open, and their landing page."""
from django.urls import reverse

from webapp.core.roles import ADMIN, has_role, landing_url_name, may_annotate, may_write


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": {"landing": reverse("status")}}
    return {"nav": {
        "landing": reverse(landing_url_name(user)),
        "write": may_write(user),
        "annotate": may_annotate(user),
        "train": has_role(user, ADMIN),
        "admin_site": user.is_staff,
    }}
