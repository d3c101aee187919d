from django.urls import path

from webapp.studio import views

app_name = "studio"
urlpatterns = [
    path("", views.write, name="write"),
    path("signup/", views.signup, name="signup"),
    path("history/", views.history, name="history"),
    path("r/<int:pk>/", views.request_page, name="request"),
    path("r/<int:pk>/cards/", views.request_cards, name="cards"),
    path("r/<int:pk>/regenerate/", views.regenerate, name="regenerate"),
    path("c/<int:pk>/feedback/", views.feedback, name="feedback"),
    path("c/<int:pk>/regenerate/", views.regenerate_candidate, name="regenerate-candidate"),
    path("s/<str:token>/", views.share, name="share"),
    path("api/requests", views.api_create, name="api-create"),
    path("api/requests/<int:pk>", views.api_detail, name="api-detail"),
    path("api/requests/<int:pk>/stream", views.api_stream, name="api-stream"),
    path("api/requests/<int:pk>/candidates/<int:index>/regenerate", views.api_regenerate_candidate,
         name="api-regenerate-candidate"),
]
