"""``file:`` CallHooks: CallScripts rendered from Jinja2 templates (spec §4.4).

The original rendered Handlebars, re-reading the file on every call. We render
Jinja2 in an ``ImmutableSandboxedEnvironment``: the template is an operator's
file, but the values in it (From/To users, SIP headers) come from whoever sends
the INVITE, and the file name comes from a dialplan a RegHook may supply.

Kept (COMPAT): the path rule (``file:<path>`` is relative to FILE_PATH whatever
the leading slashes); the context (CallHook body fields plus ``date`` in UTC,
every member a string as moment's ``format()`` gave it); ``{{ x }}`` escapes
exactly like Handlebars and prints values as JavaScript converts them to text.

Fixed: S-7 (the path is resolved, symlinks followed, and must stay inside
FILE_PATH; ``..`` is refused outright); D-16 (``date.time`` is 24-hour and
``inHours`` compares wall-clock time in the zone over ``[start, end)``,
midnight-crossing ranges included); compiled once and cached until the file's
stat changes; every failure is a typed ``CallTemplateError`` (500 with its
message as X-Reason). The clock is injected (``now``: epoch seconds) and read
once per render, so ``date`` and the helpers always agree.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Final

from jinja2 import ChainableUndefined, FunctionLoader, Template
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from engine.errors import EngineError
from engine.hooks.template_helpers import (
    COMPARISONS,
    HelperError,
    and_,
    date_fields,
    finalize,
    gte,
    in_hours,
    is_day,
    json_default,
    lte,
    or_,
    raw_filter,
    zone,
)
from engine.log import get_logger

log = get_logger(__name__)

FILE_SCHEME: Final = "file:"
DEFAULT_MAX_TEMPLATE_BYTES: Final = 1 << 20
DEFAULT_MAX_OUTPUT_BYTES: Final = 1 << 20
DEFAULT_CACHE_SIZE: Final = 256
_MESSAGE_CHARS: Final = 150  # detail kept from a foreign exception text (X-Reason stays short)


# --------------------------------------------------------------------------- errors


class CallTemplateError(EngineError):
    """A ``file:`` CallHook could not produce a CallScript; the call answers 500.

    ``kind``: ``path`` (malformed, or escapes FILE_PATH: S-7), ``not_found``,
    ``io`` (not a regular file, unreadable, too large, not UTF-8), ``syntax``,
    ``undefined`` (an undefined helper, or an undefined value used as one),
    ``render`` (a helper's bad argument such as an unknown time zone, a sandbox
    violation, output too large) or ``json`` (the output is not JSON).

    ``file`` is the FILE_PATH-relative name (never the absolute path, which is
    only logged), ``line`` the template line when Jinja knows it (a ``json``
    error names the output line and column in its message instead). ``str()``
    is one short line fit for an ``X-Reason`` header.
    """

    KINDS: Final = frozenset(
        {"path", "not_found", "io", "syntax", "undefined", "render", "json"})

    def __init__(self, kind: str, file: str, detail: str, line: int | None = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown CallTemplateError kind {kind!r}")
        self.kind = kind
        self.file = file
        self.line = line
        self.detail = _one_line(detail)
        where = f"template {file!r}" + (f" line {line}" if line is not None else "")
        super().__init__(_one_line(f"{where}: {self.detail}"))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(text: str, limit: int = 200) -> str:
    """Control characters out (header safety), length bounded."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def _short(exc: BaseException) -> str:
    return _clip(str(exc) or type(exc).__name__)


def _os_reason(exc: OSError) -> str:
    # strerror only: str(OSError) names the absolute path, which X-Reason must not show
    return exc.strerror or type(exc).__name__


# --------------------------------------------------------------------------- paths (S-7)


def is_file_callhook(value: str) -> bool:
    """True when a dialplan ``callHook`` value names a template (``file:…``, any case)."""
    return value[:5].lower() == FILE_SCHEME


def template_name(callhook: str) -> str:
    """The FILE_PATH-relative name in ``file:<path>``; leading slashes dropped.

    Raises ``CallTemplateError(kind="path")`` for a value that is not a
    ``file:`` URL, names nothing, holds a NUL byte or a ``..`` segment.
    """
    shown = callhook if len(callhook) <= 80 else callhook[:79] + "…"
    if not is_file_callhook(callhook):
        raise CallTemplateError("path", shown, "not a file: CallHook")
    rel = callhook[5:].lstrip("/")
    if not rel:
        raise CallTemplateError("path", shown, "file: CallHook names no file")
    if "\x00" in rel:
        raise CallTemplateError("path", shown, "file name contains a NUL byte")
    if any(part == ".." for part in PurePosixPath(rel).parts):
        raise CallTemplateError("path", rel, "'..' is not allowed in a file: CallHook")
    return rel


def resolve_template(callhook: str, root: Path) -> tuple[str, Path]:
    """``(relative name, real path)`` of ``callhook`` under the resolved ``root``.

    Symlinks are followed and the result must still lie inside ``root``; a link
    leading out is refused like ``..`` (kind ``path``), a miss is ``not_found``.
    """
    rel = template_name(callhook)
    try:
        real = (root / rel).resolve(strict=True)
    except FileNotFoundError:
        raise CallTemplateError("not_found", rel, "no such file under FILE_PATH") from None
    except (OSError, RuntimeError) as exc:  # symlink loop, permission, name too long
        # The exception text holds the absolute path: log it, keep it out of X-Reason.
        log.warning("callhook template path unresolvable", root=str(root), file=rel,
                    error=str(exc))
        why = _os_reason(exc) if isinstance(exc, OSError) else "symlink loop"
        raise CallTemplateError("path", rel, f"cannot be resolved: {why}") from None
    if not real.is_relative_to(root):
        raise CallTemplateError("path", rel, "resolves outside FILE_PATH")
    return rel, real


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False,  # escaping is Handlebars-style, done in finalize
        finalize=finalize,
        # a missing value (even {{ headers.x.y }}) prints "", as in Handlebars
        undefined=ChainableUndefined,
        keep_trailing_newline=True,
        # every include/import/extends misses: templates are self-contained files
        loader=FunctionLoader(lambda _name: None),
    )
    env.filters["raw"] = raw_filter
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False,
                                         "default": json_default}
    env.globals.update(COMPARISONS)
    env.globals.update({"and_": and_, "or_": or_})
    # Also as tests (`x is gte 9`), with the same strict semantics as the functions;
    # `le`/`ge` are Jinja's own spellings and are made to agree.
    env.tests.update(COMPARISONS)
    env.tests.update({"le": lte, "ge": gte})
    return env


def _bound_helpers(instant: float) -> dict[str, Callable[..., Any]]:
    """The clock-dependent helpers, bound to this render's instant."""

    def isDay(tz: Any, *names: Any) -> bool:  # the helpers' documented names
        return is_day(instant, tz, *names)

    def inHours(tz: Any, start: Any, end: Any) -> bool:
        return in_hours(instant, tz, start, end)

    def dateIn(tz: Any) -> dict[str, str]:
        return date_fields(instant, zone(tz))

    return {"isDay": isDay, "inHours": inHours, "dateIn": dateIn}


# --------------------------------------------------------------------------- the renderer


@dataclass(slots=True)
class _Entry:
    stamp: tuple[int, int, int, int]
    template: Template | None
    error: CallTemplateError | None


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    # mtime and ctime in ns, size and inode: an in-place rewrite, an atomic
    # rename over the file and a touch all change at least one of them.
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    # Jinja rewrites tracebacks so template frames carry the template's file
    # name and line; the deepest such frame is where the error happened.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class CallTemplates:
    """Resolve, compile (once, cached by stat) and render ``file:`` CallHooks.

    ``base`` is FILE_PATH (resolved once, here). ``now`` returns epoch seconds
    (pass ``clock.time``; tests pass a frozen value). ``render`` is synchronous
    and cheap on a cache hit (path resolution and one ``stat``); a miss reads
    and compiles the file, bounded by ``max_template_bytes``.
    """

    def __init__(
        self, base: Path, *, now: Callable[[], float] = time.time,
        max_template_bytes: int = DEFAULT_MAX_TEMPLATE_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.root = Path(base).resolve()
        self._now = now
        self._max_template = max_template_bytes
        self._max_output = max_output_bytes
        self._cache_size = max(1, cache_size)
        self._cache: dict[Path, _Entry] = {}
        self._env = _environment()

    @classmethod
    def from_settings(cls, settings: Any, *, now: Callable[[], float] = time.time
                      ) -> CallTemplates:
        return cls(settings.file_path, now=now)

    # -- loading

    def template(self, callhook: str) -> tuple[str, Template]:
        """``(relative name, compiled template)`` for ``callhook``, from the cache when
        the file is unchanged. Raises ``CallTemplateError`` (path, not_found, io, syntax)."""
        rel, real = resolve_template(callhook, self.root)
        try:
            st = real.stat()
        except OSError as exc:
            raise CallTemplateError("not_found", rel, f"cannot stat: {_os_reason(exc)}") from None
        stamp = _stamp(st)
        entry = self._cache.get(real)
        if entry is None or entry.stamp != stamp:
            entry = self._load(rel, real, st, stamp)
            self._remember(real, entry)
        if entry.error is not None:
            raise entry.error
        assert entry.template is not None
        return rel, entry.template

    def _load(self, rel: str, real: Path, st: os.stat_result,
              stamp: tuple[int, int, int, int]) -> _Entry:
        if not real.is_file():
            raise CallTemplateError("io", rel, "not a regular file")
        if st.st_size > self._max_template:
            raise CallTemplateError("io", rel, f"larger than {self._max_template} bytes")
        try:
            with real.open("rb") as fh:
                data = fh.read(self._max_template + 1)
        except OSError as exc:
            raise CallTemplateError("io", rel, f"cannot read: {_os_reason(exc)}") from None
        if len(data) > self._max_template:
            raise CallTemplateError("io", rel, f"larger than {self._max_template} bytes")
        try:
            source = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CallTemplateError("io", rel, f"not UTF-8 (byte {exc.start})") from None
        try:
            code = self._env.compile(source, name=rel, filename=str(real))
            template = self._env.template_class.from_code(
                self._env, code, self._env.make_globals(None), None)
        except TemplateSyntaxError as exc:
            # Cached too: a broken file costs one stat per call, not a re-parse.
            log.warning("callhook template does not compile", file=str(real),
                        line=exc.lineno, error=exc.message)
            return _Entry(stamp, None, CallTemplateError(
                "syntax", rel, _clip(exc.message or "syntax error"), exc.lineno))
        log.debug("callhook template compiled", file=str(real))
        return _Entry(stamp, template, None)

    def _remember(self, real: Path, entry: _Entry) -> None:
        self._cache.pop(real, None)
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]  # oldest insertion first
        self._cache[real] = entry

    # -- rendering

    def render_text(self, callhook: str, context: Mapping[str, Any]) -> str:
        """The rendered text of ``callhook`` for the CallHook body ``context``.

        The template sees the body fields, ``date`` (UTC), the comparison
        helpers and ``isDay``/``inHours``/``dateIn`` bound to one instant.
        """
        return self._render(callhook, context)[1]

    def _render(self, callhook: str, context: Mapping[str, Any]) -> tuple[str, str]:
        rel, template = self.template(callhook)
        instant = self._now()
        variables: dict[str, Any] = dict(context)
        variables["date"] = date_fields(instant)
        variables.update(_bound_helpers(instant))
        filename = template.filename or ""
        chunks: list[str] = []
        size = 0
        try:
            for chunk in template.generate(variables):
                size += len(chunk)
                if size > self._max_output:
                    raise HelperError(f"output larger than {self._max_output} characters")
                chunks.append(chunk)
        except UndefinedError as exc:
            raise CallTemplateError("undefined", rel, _short(exc),
                                    _template_line(exc.__traceback__, filename)) from None
        except TemplateNotFound as exc:
            raise CallTemplateError("render", rel, "include/import/extends are not supported",
                                    _template_line(exc.__traceback__, filename)) from None
        except SecurityError as exc:
            raise CallTemplateError("render", rel, f"not allowed: {_short(exc)}",
                                    _template_line(exc.__traceback__, filename)) from None
        except Exception as exc:
            # Helpers' argument errors and anything the template's Python raised
            # (TypeError, ZeroDivisionError, RecursionError…) stay with this call.
            detail = _short(exc) if isinstance(exc, HelperError) else (
                f"{type(exc).__name__}: {_short(exc)}")
            raise CallTemplateError("render", rel, detail,
                                    _template_line(exc.__traceback__, filename)) from None
        return rel, "".join(chunks)

    def render(self, callhook: str, context: Mapping[str, Any]) -> Any:
        """The JSON value ``callhook`` renders to (normally a CallScript array).

        Validate the result with ``engine.hooks.callscript.validate_callscript``.
        ``NaN``/``Infinity`` are refused: they are not JSON.
        """
        rel, text = self._render(callhook, context)
        return parse_rendered(text, rel)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_rendered(text: str, file: str) -> Any:
    """Parse rendered template output as strict JSON; ``CallTemplateError(kind="json")``
    naming the output line and column otherwise."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise CallTemplateError(
            "json", file, f"output is not JSON: {exc.msg} (output line {exc.lineno} "
            f"column {exc.colno})", None) from None
    except (ValueError, RecursionError) as exc:
        raise CallTemplateError("json", file, f"output is not JSON: {_short(exc)}") from None


__all__ = [
    "CallTemplateError", "CallTemplates", "is_file_callhook", "parse_rendered",
    "resolve_template", "template_name",
]
