"""Roles are Django groups: writer (anyone who signs up), annotator, admin."""
import secrets
from functools import wraps

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

WRITER, ANNOTATOR, ADMIN = "writer", "annotator", "admin"
ROLES = (WRITER, ANNOTATOR, ADMIN)


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
                raise PermissionDenied("Your role does not allow this page.")
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
