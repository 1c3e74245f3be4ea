from django.urls import path, re_path

from . import views

app_name = "sandbox"

urlpatterns = [
    path("", views.index, name="index"),
    path("<str:region>/apps/authorize/consent", views.consent, name="consent"),
    path("auth/o2/token", views.token, name="token"),
    re_path(r"^spapi/(?P<region>na|eu|fe)(?P<path>/.*)$", views.spapi, name="spapi"),
]
