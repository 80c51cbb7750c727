"""Configuration data sources (json · api · pg) and dialplan/glob/CIDR matching.

Import from the submodules (``engine.config.source``, ``engine.config.model``,
``engine.config.matching``, ``engine.config.factory``): this package file stays
empty on purpose so that importing the pure matching core does not pull in
httpx or psycopg (the import-graph rule of design.md).
"""
