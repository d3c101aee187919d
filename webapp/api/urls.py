from django.urls import path

from webapp.api import views

app_name = "api"
urlpatterns = [
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("completions", views.completions, name="completions"),
    path("models", views.models, name="models"),
    path("engine", views.engine, name="engine"),
]
