"""Demo data: each app registers a loader; the run command loads them into an empty database.

A loader is `fn(stdout) -> int` (rows created) and must be idempotent: `load_demo` may run twice.
Loaders run in `order`; the knowledge base (starter spells) comes before the builds that match it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

Loader = Callable[[TextIO], int]


@dataclass(frozen=True)
class DemoLoader:
    name: str
    order: int
    fn: Loader
    # "label.Model" names whose rows mean "this database is in use": demo data is not loaded then.
    models: tuple[str, ...] = ()


_loaders: dict[str, DemoLoader] = {}


def demo_loader(
    name: str, *, order: int = 50, models: tuple[str, ...] = ()
) -> Callable[[Loader], Loader]:
    def decorator(fn: Loader) -> Loader:
        _loaders[name] = DemoLoader(name=name, order=order, fn=fn, models=models)
        return fn

    return decorator


def registered_loaders() -> list[DemoLoader]:
    return sorted(_loaders.values(), key=lambda loader: (loader.order, loader.name))


def database_is_empty() -> bool:
    from django.apps import apps

    for loader in registered_loaders():
        for label in loader.models:
            if apps.get_model(label).objects.exists():
                return False
    return True


def load_all(stdout: TextIO) -> dict[str, int]:
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("demo")  # each app's demo.py registers its loaders
    return {loader.name: loader.fn(stdout) for loader in registered_loaders()}
