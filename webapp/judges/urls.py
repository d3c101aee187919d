from django.urls import path

from webapp.judges import views

app_name = "judges"
urlpatterns = [
    path("", views.judge_list, name="list"),
    path("<int:pk>/activate/", views.activate, name="activate"),
]
