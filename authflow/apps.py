from django.apps import AppConfig


class AuthflowConfig(AppConfig):
    name = "authflow"
    verbose_name = "Consent flow"
