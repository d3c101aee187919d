from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The top of the web floor: what wires every app together (the `demo` command). It may import
    any app; no app imports it."""

    name = "webapp.site"
    label = "site"
    verbose_name = "Zhufu site (the demo runner)"
