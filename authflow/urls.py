from django.urls import path

from . import views

app_name = "authflow"

urlpatterns = [
    path("connect/<str:token>/", views.invite, name="invite"),
    path("connect/<str:token>/start/", views.start, name="start"),
    path("authflow/callback/", views.callback, name="callback"),
    path("authflow/result/", views.result, name="result"),
]
