from django.urls import path

from . import login_uri, views

app_name = "authflow"

urlpatterns = [
    path("connect/<str:token>/", views.invite, name="invite"),
    path("connect/<str:token>/start/", views.start, name="start"),
    path("authflow/callback/", views.callback, name="callback"),
    path("authflow/result/", views.result, name="result"),
    path("authflow/login/<uuid:tenant_id>/", login_uri.login_uri, name="login_uri"),
]
