"""``make_source(settings)``: the configuration back-end chosen by ``DATA_SOURCE``."""

from __future__ import annotations

from typing import Any

from engine.config.source import ConfigSource
from engine.errors import ConfigError
from engine.settings import Settings


def make_source(settings: Settings, **options: Any) -> ConfigSource:
    """A not-yet-started source for ``settings.data_source`` (json | api | pg).

    ``options`` go to the back-end's constructor (tests shorten poll
    intervals and retry delays this way). Back-ends are imported lazily so a
    json deployment never imports psycopg.
    """
    kind = settings.data_source
    if kind == "json":
        from engine.config.json_source import JsonFileSource

        return JsonFileSource(settings, **options)
    if kind == "api":
        from engine.config.api_source import ApiSource

        return ApiSource(settings, **options)
    if kind == "pg":
        from engine.config.pg_source import PgSource

        return PgSource(settings, **options)
    raise ConfigError(f"DATA_SOURCE={kind!r} is invalid: expected one of api, json, pg")


__all__ = ["make_source"]
