"""Roles are Django groups: writer (anyone who signs up), annotator, admin."""
import secrets
from functools import wraps

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

WRITER, ANNOTATOR, ADMIN = "writer", "annotator", "admin"
ROLES = (WRITER, ANNOTATOR, ADMIN)
ROLE_TITLES = {WRITER: "写手 writer", ANNOTATOR: "标注员 annotator", ADMIN: "管理员 admin"}


class RoleRequired(PermissionDenied):
    """A page refused to the user's role; `roles` are the roles that may open it (the 403 page names them)."""

    def __init__(self, roles, message: str = "Your role does not allow this page."):
        super().__init__(message)
        self.roles = tuple(roles)


def ensure_roles() -> None:
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def has_role(user, role: str) -> bool:
    if not user.is_authenticated:
        return False
    if role == ADMIN and user.is_superuser:
        return True
    return role in role_names(user)


def role_required(*roles):
    """A page for these roles: anonymous users go to sign in, other roles get 403."""
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not any(has_role(request.user, role) for role in roles):
                raise RoleRequired(roles)
            return view(request, *args, **kwargs)
        return wrapper
    return decorator


admin_required = role_required(ADMIN)


def role_names(user) -> frozenset[str]:
    """The user's groups, read once per user object: a page asks several times (its view's check, the nav), and
    each request loads its user afresh, so a role given or taken shows from the next request on."""
    names = getattr(user, "_role_names", None)
    if names is None:
        names = frozenset(user.groups.values_list("name", flat=True))
        user._role_names = names
    return names


def create_user_with_role(username: str, role: str, password: str | None = None) -> tuple[object, str | None]:
    """Create `username` with `role`; returns (user, password) — the password only when new."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    ensure_roles()
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = password or secrets.token_urlsafe(12)
    is_admin = role == ADMIN
    user = User.objects.create_user(username=username, password=password, is_staff=is_admin, is_superuser=is_admin)
    user.groups.add(Group.objects.get(name=role))
    user.__dict__.pop("_role_names", None)
    return user, password


# Where each role starts after signing in, most powerful role first (a `next` parameter wins over this).
LANDING_BY_ROLE = ((ADMIN, "jobs:list"), (ANNOTATOR, "annotation:home"), (WRITER, "studio:write"))
NO_ROLE_LANDING = "status"


def may_write(user) -> bool:
    return any(has_role(user, role) for role in (WRITER, ANNOTATOR, ADMIN))


def may_annotate(user) -> bool:
    return has_role(user, ANNOTATOR) or has_role(user, ADMIN)


def landing_url_name(user) -> str:
    """The URL name of the page `user` lands on: admins train, annotators rate, writers write;
    staff without a role see the status page."""
    for role, url_name in LANDING_BY_ROLE:
        if has_role(user, role):
            return url_name
    return NO_ROLE_LANDING
