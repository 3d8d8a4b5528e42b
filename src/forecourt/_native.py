"""Which of Forecourt's modules run compiled (mypyc), and a guard against stale builds.

The per-request path (client protocol, exchange, upstream protocol, router, access log) is
compiled with mypyc by `scripts/build_native.py` (run by `make`), which roughly halves its Python
cost. The compiled extensions sit beside their sources and the import system prefers them, so an
edited source would silently keep running its old compiled self. This guard, run when the package
is imported, compares the sources with the hashes recorded at build time: if any compiled module
changed, or the build is missing or incomplete, *all* of them load from source (the compiled
modules share one native library and cannot be mixed with interpreted copies of each other).
`FORECOURT_PURE_PYTHON=1` forces pure Python. This module itself is never compiled.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The modules scripts/build_native.py compiles, in one group. Code outside this list may subclass
# only classes marked `@mypyc_attr(allow_interpreted_subclasses=True)`; keep subclasses of
# compiled classes inside the list.
COMPILED_MODULES: tuple[str, ...] = (
    "forecourt.http.headers",
    "forecourt.http.request",
    "forecourt.http.response_head",
    "forecourt.http.server",
    "forecourt.http.upstream",
    "forecourt.http.pool",
    "forecourt.http.upstream_user",
    "forecourt.proxy.forward",
    "forecourt.proxy.aggregate",
    "forecourt.proxy.backend_call",
    "forecourt.runtime",
    "forecourt.routing.router",
    "forecourt.routing.normalize",
    "forecourt.observability.access_log",
    "forecourt.pipeline.context",
    "forecourt.pipeline.chain",
    "forecourt.plugins._consumer_headers",
    "forecourt.plugins.correlation_ids",
    "forecourt.plugins.jwt.plugin",
    "forecourt.plugins.rate_limiting",
    "forecourt.state.counters",
    "forecourt.state.shared_table",
    "forecourt.upstream.balancers.round_robin",
)

# Hand-written C extensions built with them, each the fast path of one compiled module (which falls
# back to Python without it): module name -> C source. Held to the same staleness check.
C_HELPERS: dict[str, str] = {
    "forecourt.state._slot_take": "forecourt/state/_slot_take.c",
}

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the package
MANIFEST = Path(__file__).resolve().parent / "_native_build.json"
PURE_PYTHON_ENV = "FORECOURT_PURE_PYTHON"


def source_path(module: str, root: Path = SOURCE_ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_hashes(modules: Sequence[str] = COMPILED_MODULES, root: Path = SOURCE_ROOT) -> dict[str, str]:
    """sha256 of each module's source (a C helper's C file; other modules' .py)."""
    return {
        m: hashlib.sha256(
            (root / C_HELPERS[m] if m in C_HELPERS else source_path(m, root)).read_bytes()
        ).hexdigest()
        for m in modules
    }


def built_modules() -> tuple[str, ...]:
    """Everything a build makes: the compiled modules and the C helpers."""
    return COMPILED_MODULES + tuple(C_HELPERS)


def build_tag() -> str:
    """The interpreter a build is valid for (extensions are per version and ABI)."""
    return f"{sys.implementation.cache_tag}-{sys.platform}"


def stale_reason(manifest: Path = MANIFEST, root: Path = SOURCE_ROOT) -> str | None:
    """Why the compiled modules must not be used, or None when the build matches the sources."""
    try:
        recorded = json.loads(manifest.read_text())
    except FileNotFoundError:
        return "not built"
    except (OSError, ValueError) as exc:
        return f"unreadable build record {manifest}: {exc}"
    if recorded.get("tag") != build_tag():
        return f"built for {recorded.get('tag')}, running {build_tag()}"
    modules = recorded.get("modules")
    expected = built_modules()
    if not isinstance(modules, dict) or set(modules) != set(expected):
        return "the list of compiled modules changed"
    try:
        current = source_hashes(expected, root)
    except OSError as exc:
        return f"cannot read a source: {exc}"
    changed = sorted(m for m in expected if modules[m] != current[m])
    if changed:
        return f"sources changed since the build ({', '.join(changed)})"
    return None


class SourceFirstFinder(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their .py files even where a compiled extension exists, and
    hides the C helpers (`hidden`), whose callers then take their Python paths."""

    def __init__(self, modules: Sequence[str], root: Path, hidden: Sequence[str] = ()) -> None:
        self.modules = frozenset(modules)
        self.hidden = frozenset(hidden)
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.hidden:
            raise ModuleNotFoundError(f"{fullname} is not used: Forecourt runs as pure Python", name=fullname)
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname, self.root))


def _decide() -> str:
    """Install the source-first finder unless the compiled build is current; describe the outcome."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        reason: str | None = f"{PURE_PYTHON_ENV} is set"
    else:
        reason = stale_reason()
    if reason is None:
        return f"compiled ({len(COMPILED_MODULES)} modules, mypyc; {len(C_HELPERS)} C helper)"
    sys.meta_path.insert(0, SourceFirstFinder(COMPILED_MODULES, SOURCE_ROOT, tuple(C_HELPERS)))
    if reason != "not built" and not os.environ.get(PURE_PYTHON_ENV):
        sys.stderr.write(
            f"forecourt: running pure Python: {reason}; `make native` rebuilds the compiled modules\n"
        )
    return f"pure Python ({reason})"


# (Only as the package's own module: scripts/build_native.py loads this file by path for the list.)
STATUS = _decide() if __name__ == "forecourt._native" else "not decided"
