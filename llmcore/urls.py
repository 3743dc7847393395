from __future__ import annotations

from django.urls import path

from llmcore import views

urlpatterns = [
    path("api/v1/llm_jobs", views.JobSubmitView.as_view(), name="llm-jobs"),
    path("api/v1/llm_outputs", views.OutputListView.as_view(), name="llm-outputs"),
    path(
        "api/v1/llm_outputs/<uuid:output_id>", views.OutputDetailView.as_view(), name="llm-output"
    ),
    path(
        "api/v1/llm_outputs/<uuid:output_id>/feedback",
        views.FeedbackView.as_view(),
        name="llm-output-feedback",
    ),
    path(
        "api/v1/llm_outputs/<uuid:output_id>/re_run",
        views.RerunView.as_view(),
        name="llm-output-rerun",
    ),
    path(
        "api/v1/llm_outputs/<uuid:output_id>/regenerate",
        views.RegenerateView.as_view(),
        name="llm-output-regenerate",
    ),
    path("api/v1/llm/metrics", views.MetricsView.as_view(), name="llm-metrics"),
    path("api/ai/generate", views.GenerateView.as_view(), name="ai-generate"),
    path("llm_outputs", views.output_list_page, name="llm-outputs-page"),
    path("llm_outputs/<uuid:output_id>", views.output_detail_page, name="llm-output-page"),
    path(
        "llm_outputs/<uuid:output_id>/<str:action>",
        views.output_action_page,
        name="llm-output-action",
    ),
]
