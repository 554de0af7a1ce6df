"""The public help center (/help/): the request form of each web form inbox."""

from django.urls import path

from knowledge_base import views

app_name = "help"

urlpatterns = [
    path("new/", views.new_request_default, name="new_request_default"),
    path("<slug:slug>/new/", views.new_request, name="new_request"),
    path("<slug:slug>/sent/<str:token>/", views.request_sent, name="request_sent"),
]
