"""``DATA_SOURCE=json``: the configuration file, hot-reloaded when it changes.

The file is polled with ``stat`` (mtime, ctime, size, inode — an editor's
rename-over and an in-place write both change one of them), once per second
by default; no extra dependency, negligible cost. A changed file is read and
validated; invalid content is refused and logged once per version of the
file, and the previous configuration keeps serving.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.config.model import ConfigSnapshot
from engine.config.source import ConfigSource
from engine.config.validate import snapshot_from_json_text
from engine.errors import ConfigError, Diagnostic
from engine.settings import Settings

StatKey = tuple[int, int, int, int, int]


def _stat_key(path: Path) -> StatKey | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def read_config_file(path: Path, precedence: str = "specific") -> ConfigSnapshot:
    """Read and validate one JSON configuration file (also used by the CLI)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read the configuration file: {reason}", [
            Diagnostic(str(path), 1, 1, "CONFIG_IO", "$", f"cannot read: {reason}")]) from None
    return snapshot_from_json_text(text, file=str(path), precedence=precedence)


class JsonFileSource(ConfigSource):
    """Configuration from ``settings.config_file`` (or ``path``)."""

    kind = "json"

    def __init__(self, settings: Settings, *, path: Path | str | None = None,
                 poll_interval: float = 1.0, precedence: str | None = None):
        super().__init__(settings, precedence=precedence)
        self.path = Path(path) if path is not None else Path(settings.config_file)
        self.poll_interval = poll_interval
        self._seen: StatKey | None = None

    @property
    def description(self) -> str:
        return f"json:{self.path}"

    async def load(self) -> ConfigSnapshot:
        self._seen = _stat_key(self.path)  # taken before reading: a later write is seen
        return await asyncio.to_thread(read_config_file, self.path, self.precedence)

    async def _watch(self) -> None:
        missing_logged = False
        while True:
            await asyncio.sleep(self.poll_interval)
            key = await asyncio.to_thread(_stat_key, self.path)
            if key is None:
                if not missing_logged:
                    self.log.warning("config file missing, keeping the last good config",
                                     source=self.description)
                    missing_logged = True
                continue
            missing_logged = False
            if key != self._seen:
                await self.refresh("file changed")


__all__ = ["JsonFileSource", "read_config_file"]
