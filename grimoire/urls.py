from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from grimoire import health
from grimoire.views import MeView

admin.site.site_header = "Grimoire"
admin.site.site_title = "Grimoire"
admin.site.index_title = "Knowledge base of CI failures and fixes"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/me", MeView.as_view(), name="api-me"),
    path("admin/", admin.site.urls),
]

# Each app owns its URLs; an app without urls.py yet is simply not mounted. spells comes first:
# its GitHub webhook receiver is the hottest path, and patterns are tried in order.
for _app in ("spells", "llmcore", "builds", "issues"):
    try:
        urlpatterns.append(path("", include(f"{_app}.urls")))
    except ModuleNotFoundError as exc:
        if exc.name != f"{_app}.urls":
            raise
