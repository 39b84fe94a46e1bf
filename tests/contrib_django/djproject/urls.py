from django.contrib import admin
from django.urls import path

from contrib_django.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("notes/", views.create_note),
]
