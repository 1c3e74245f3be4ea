from django.urls import path, re_path

from . import amazon_initiated, restricted, views

app_name = "sandbox"

urlpatterns = [
    path("", views.index, name="index"),
    path("mode", views.mode_switch, name="mode"),
    path("<str:region>/apps/authorize/consent", views.consent, name="consent"),
    path("auth/o2/token", views.token, name="token"),
    re_path(r"^spapi/(?P<region>na|eu|fe)(?P<path>/.*)$", restricted.spapi_view(views.spapi), name="spapi"),
]

# Amazon-initiated authorization: Seller Central opening an app's Login URI, and its callback page.
urlpatterns += [
    path("start-from-amazon/", amazon_initiated.start_from_amazon, name="start_from_amazon"),
    path("<str:region>/apps/authorize/amazon-callback", amazon_initiated.amazon_callback, name="amazon_callback"),
]
