from __future__ import annotations

from django.urls import path

from issues import views

urlpatterns = [
    path("issues", views.IssueListCreateView.as_view(), name="issues"),
    path("issues/<uuid:issue_id>", views.IssueDetailView.as_view(), name="issue"),
    path("issues/<uuid:issue_id>/enrich", views.IssueEnrichView.as_view(), name="issue-enrich"),
]
