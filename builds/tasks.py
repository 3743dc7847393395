from __future__ import annotations

from builds import services


def analyze_build(build_id: str) -> str | None:
    build = services.build_analyze(build_id=build_id)
    return build.analysis_status if build is not None else None


def run_build(build_id: str) -> str:
    from builds.runner import run_build as run

    return run(build_id=build_id).status


def run_autofix(run_id: str) -> str | None:
    from builds import autofix

    run = autofix.autofix_run(run_id=run_id, time_budget=autofix.run_time_budget())
    return run.status if run is not None else None
