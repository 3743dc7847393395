from __future__ import annotations

from typing import Any


def match_analyzed_build(sender: Any, build: Any, analysis: dict[str, Any], **_: Any) -> None:
    from spells.services import build_match

    build_match(build=build, analysis=analysis)
