from __future__ import annotations

from django.urls import path

from builds import learning, pages, views

urlpatterns = [
    path("api/v1/builds", views.BuildListCreateView.as_view(), name="builds"),
    path("api/v1/builds/<uuid:build_id>", views.BuildDetailView.as_view(), name="build"),
    path("api/v1/builds/<uuid:build_id>/log", views.BuildLogView.as_view(), name="build-log"),
    path(
        "api/v1/builds/<uuid:build_id>/finish", views.BuildFinishView.as_view(), name="build-finish"
    ),
    path(
        "api/v1/builds/<uuid:build_id>/analyze",
        views.BuildAnalyzeView.as_view(),
        name="build-analyze",
    ),
    path("llm/learning/builds", learning.LearningBuildsView.as_view(), name="learning-builds"),
    path(
        "llm/learning/build/<uuid:build_id>",
        learning.LearningBuildView.as_view(),
        name="learning-build",
    ),
    path(
        "llm/learning/codebase", learning.LearningCodebaseView.as_view(), name="learning-codebase"
    ),
    path("llm/learning/report", learning.LearningReportView.as_view(), name="learning-report"),
    path("build/run", learning.BuildRunView.as_view(), name="build-run"),
    path("builds/<uuid:build_id>/log", pages.build_log_page, name="build-log-page"),
]

# The autofix loop (seed 004's QA API).
from builds import autofix_views  # noqa: E402

urlpatterns += [
    path("api/qa/run", autofix_views.QaRunView.as_view(), name="qa-run"),
    path(
        "api/qa/runs/<uuid:run_id>", autofix_views.QaRunDetailView.as_view(), name="qa-run-detail"
    ),
    path(
        "api/qa/runs/<uuid:run_id>/patch",
        autofix_views.QaRunPatchView.as_view(),
        name="qa-run-patch",
    ),
]
