from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from api.views import api
from spconnect.health import healthz
from spconnect.views import home

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("authflow.urls")),
]

if settings.SPAPI_SANDBOX:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
