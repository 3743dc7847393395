from __future__ import annotations

from django.urls import path

from spells import views, webhooks

urlpatterns = [
    path("webhooks/github/", webhooks.github_webhook, name="github-webhook"),
    path("api/v1/spells", views.SpellListView.as_view(), name="spells"),
    path("api/v1/spells/match", views.MatchView.as_view(), name="spells-match"),
    path("api/v1/spells/generate", views.GenerateView.as_view(), name="spells-generate"),
    path("api/v1/spells/metrics", views.MetricsView.as_view(), name="spells-metrics"),
    path("api/v1/spells/<int:spell_id>", views.SpellDetailView.as_view(), name="spell"),
]
