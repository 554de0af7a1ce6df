from django.apps import AppConfig


class HelpdeskConfig(AppConfig):
    name = "helpdesk"
    verbose_name = "Helpdesk"

    def ready(self) -> None:
        # Signal receivers: the unread-notification count is warmed at sign-in.
        from helpdesk.actions import notifications  # noqa: F401
