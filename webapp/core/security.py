"""Site-wide protections that no single app owns: sign-in throttling and the Content-Security-Policy.

Sign-in throttling counts failed sign-ins per (username, client address) in the shared cache
(Redis in production, so every web process sees the same count). After
LOGIN_THROTTLE_ATTEMPTS failures within LOGIN_THROTTLE_WINDOW seconds, further sign-in POSTs
for that pair are answered 429 with "too many attempts, try again in N minutes" until the window
ends; a successful sign-in clears the count. It covers every Django login view (the site's
/accounts/login/ and the admin's), because failures are counted from Django's own
``user_login_failed`` signal and the refusal happens in a middleware before the view runs.
"""
from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.shortcuts import render
from django.urls import Resolver404, resolve

DEFAULT_ATTEMPTS = 5
DEFAULT_WINDOW_S = 15 * 60
LOGIN_URL_NAMES = {"login"}  # the site's LoginView ("login") and the admin's ("admin:login")


def throttle_limits() -> tuple[int, int]:
    return (int(getattr(settings, "LOGIN_THROTTLE_ATTEMPTS", DEFAULT_ATTEMPTS)),
            int(getattr(settings, "LOGIN_THROTTLE_WINDOW", DEFAULT_WINDOW_S)))


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _throttle_key(username: str, ip: str) -> str:
    # Hashed: usernames are user input (any length, any character) and cache keys must be short and safe.
    digest = hashlib.sha256(f"{username.strip().casefold()}\x00{ip}".encode("utf-8", "replace")).hexdigest()[:32]
    return f"login-throttle:{digest}"


def record_failed_login(username: str, ip: str) -> int:
    """Counts one failure; returns the failures so far in the current window."""
    _, window = throttle_limits()
    key = _throttle_key(username, ip)
    cache.add(f"{key}:since", time.time(), timeout=window)  # the window starts at the first failure
    cache.add(f"{key}:count", 0, timeout=window)
    try:
        return cache.incr(f"{key}:count")
    except ValueError:  # expired between add and incr
        cache.set(f"{key}:count", 1, timeout=window)
        return 1


def clear_failed_logins(username: str, ip: str) -> None:
    key = _throttle_key(username, ip)
    cache.delete_many([f"{key}:count", f"{key}:since"])


def seconds_locked(username: str, ip: str) -> int:
    """0 when this (username, address) may try to sign in; else seconds until it may again."""
    attempts, window = throttle_limits()
    key = _throttle_key(username, ip)
    values = cache.get_many([f"{key}:count", f"{key}:since"])
    if int(values.get(f"{key}:count") or 0) < attempts:
        return 0
    since = float(values.get(f"{key}:since") or time.time())
    return max(1, math.ceil(since + window - time.time()))


def lockout_message(seconds: int) -> str:
    wait = f"{math.ceil(seconds / 60)} minute(s)" if seconds >= 60 else f"{seconds} second(s)"
    return f"Too many failed sign-in attempts for this account from your address; try again in {wait}."


def _on_login_failed(sender, credentials, request=None, **kwargs):
    if request is not None:
        record_failed_login(str(credentials.get("username", "")), client_ip(request))


def _on_logged_in(sender, request, user, **kwargs):
    if request is not None:
        clear_failed_logins(user.get_username(), client_ip(request))


def connect_signals() -> None:
    """Called from CoreConfig.ready()."""
    user_login_failed.connect(_on_login_failed, dispatch_uid="zhufu-login-throttle-failed")
    user_logged_in.connect(_on_logged_in, dispatch_uid="zhufu-login-throttle-ok")


def _is_login_post(request) -> bool:
    if request.method != "POST":
        return False
    try:
        return resolve(request.path_info).url_name in LOGIN_URL_NAMES
    except Resolver404:
        return False


class LoginThrottleMiddleware:
    """Answers 429 to a sign-in POST whose (username, address) has used up its failures."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _is_login_post(request):
            username = request.POST.get("username", "")
            wait = seconds_locked(username, client_ip(request))
            if wait:
                response = render(request, "registration/login.html",
                                  {"throttled": lockout_message(wait), "next": request.POST.get("next", "")},
                                  status=429)
                response["Retry-After"] = str(wait)
                return response
        return self.get_response(request)


# --- Content-Security-Policy: scripts and styles come from this site only (htmx is served
# locally by django-htmx, no CDN); inline <script> and on*= handlers are refused. Inline styles are
# allowed because htmx injects its indicator style and the SVG charts carry style attributes.
# No 'unsafe-eval': the app uses no hx-trigger filters (htmx compiles those with Function()); the
# studio's polling stands down during a live stream from static/js/studio.js instead.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    """Adds CONTENT_SECURITY_POLICY (settings, default above) to every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", CONTENT_SECURITY_POLICY)

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
