#!/usr/bin/env python3
"""Compile Forecourt's per-request modules with mypyc (run by `make`; pure Python is the fallback).

    .venv/bin/python scripts/build_native.py            # build when the sources changed
    .venv/bin/python scripts/build_native.py --force    # rebuild
    .venv/bin/python scripts/build_native.py --clean    # remove the compiled modules
    .venv/bin/python scripts/build_native.py --require  # fail (exit 1) instead of falling back

The module list is `forecourt._native.COMPILED_MODULES`, plus the hand-written C helpers of
`forecourt._native.C_HELPERS`. The extensions are built in place, beside
their sources (`src/forecourt/**/*.so`, git-ignored), with the C sources and objects in
`build/mypyc/`. The build records the hashes of the sources it compiled in
`src/forecourt/_native_build.json`; at import, `forecourt._native` loads the compiled modules only
when that record matches the sources, so an edit never runs stale compiled code.

A failed build (no C compiler, say) removes any old extensions, prints why and exits 0, so the
gateway runs as pure Python; `--require` makes it an error instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
BUILD_DIR = REPO / "build" / "mypyc"
GROUP = "forecourt_native"  # the shared library: src/forecourt_native__mypyc.*.so


def load_native_module() -> Any:
    """forecourt/_native.py by path: importing the package would run its guard."""
    spec = importlib.util.spec_from_file_location("_forecourt_native_list", SRC / "forecourt" / "_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def built_files() -> list[Path]:
    """Every extension a build left in the source tree (also of modules no longer on the list)."""
    return [*SRC.glob(f"{GROUP}__mypyc*.so"), *(SRC / "forecourt").rglob("*.so")]


def clean(native: Any) -> None:
    manifest: Path = native.MANIFEST
    manifest.unlink(missing_ok=True)
    for path in built_files():
        path.unlink()


SETUP = """
import sys
from setuptools import Extension, setup
from mypyc.build import mypycify
paths = sys.argv[1:]
sys.argv[1:] = ["build_ext", "--inplace", "--build-temp", {temp!r}, "--build-lib", {lib!r}]
helpers = [Extension(name, [source], extra_compile_args=["-O2"]) for name, source in {helpers!r}.items()]
setup(name="forecourt-native", ext_modules=mypycify(paths, opt_level="3", group_name={group!r},
      target_dir={target!r}) + helpers)
"""


def build(native: Any) -> tuple[bool, str]:
    modules: tuple[str, ...] = native.COMPILED_MODULES
    paths = [str(native.source_path(m).relative_to(SRC)) for m in modules]
    script = SETUP.format(
        temp=str(BUILD_DIR / "temp"),
        lib=str(BUILD_DIR / "lib"),
        group=GROUP,
        target=str(BUILD_DIR / "c"),
        helpers=native.C_HELPERS,
    )
    # (The build imports nothing of ours to run, but a stray import must not warn about staleness.)
    env = {**os.environ, "MYPY_CACHE_DIR": str(BUILD_DIR / "mypy-cache"), native.PURE_PYTHON_ENV: "1"}
    # The project's mypy settings (strict, the pydantic plugin) type-check the build as `make lint` does.
    config = ["--config-file", str(REPO / "pyproject.toml")]
    done = subprocess.run(
        [sys.executable, "-c", script, *config, *paths],
        cwd=SRC,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules and stop")
    parser.add_argument("--require", action="store_true", help="exit 1 when the build fails")
    args = parser.parse_args()
    native = load_native_module()
    if args.clean:
        clean(native)
        print("build_native: compiled modules removed; Forecourt runs as pure Python")
        return 0
    if not args.force and native.stale_reason() is None:
        print("build_native: compiled modules are up to date")
        return 0
    if os.environ.get(native.PURE_PYTHON_ENV, "") not in ("", "0"):
        print(f"build_native: {native.PURE_PYTHON_ENV} is set; not compiling")
        return 0
    clean(native)
    hashes = native.source_hashes(native.built_modules())  # before the build: edits during it show as stale
    print(
        f"build_native: compiling {len(native.COMPILED_MODULES)} modules with mypyc and "
        f"{len(native.C_HELPERS)} C helper (about a minute)",
        flush=True,
    )
    ok, output = build(native)
    if not ok:
        clean(native)
        tail = "\n".join(output.strip().splitlines()[-25:])
        print(f"{tail}\nbuild_native: the mypyc build failed; Forecourt runs as pure Python", file=sys.stderr)
        return 1 if args.require else 0
    manifest: Path = native.MANIFEST
    manifest.write_text(json.dumps({"tag": native.build_tag(), "modules": hashes}, indent=1) + "\n")
    print(f"build_native: built {len(hashes)} modules ({len(built_files())} extensions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
