"""The guard that keeps stale compiled (mypyc) modules from loading (forecourt._native)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forecourt import _native

MODULES = ("pkg.a", "pkg.sub.b")


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("VALUE = 1\n")
    (root / "pkg" / "sub" / "b.py").write_text("VALUE = 2\n")
    return root


def test_a_tree_without_a_build_record_is_not_built(tmp_path: Path) -> None:
    assert _native.stale_reason(tmp_path / "missing.json", _tree(tmp_path)) == "not built"


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict[str, str]]:
    """A source tree of MODULES (the list compiled), its build record's path and its hashes."""
    monkeypatch.setattr(_native, "COMPILED_MODULES", MODULES)
    monkeypatch.setattr(_native, "C_HELPERS", {})
    root = _tree(tmp_path)
    return root, tmp_path / "build.json", _native.source_hashes(MODULES, root)


def test_a_build_matching_its_sources_is_current_and_an_edit_makes_it_stale(
    built: tuple[Path, Path, dict[str, str]],
) -> None:
    root, manifest, hashes = built
    manifest.write_text(json.dumps({"tag": _native.build_tag(), "modules": hashes}))
    assert _native.stale_reason(manifest, root) is None
    (root / "pkg" / "sub" / "b.py").write_text("VALUE = 3\n")
    assert _native.stale_reason(manifest, root) == "sources changed since the build (pkg.sub.b)"


def test_a_build_for_another_interpreter_or_module_list_is_stale(
    built: tuple[Path, Path, dict[str, str]],
) -> None:
    root, manifest, hashes = built
    manifest.write_text(json.dumps({"tag": "cpython-39-linux", "modules": hashes}))
    assert "built for cpython-39-linux" in (_native.stale_reason(manifest, root) or "")
    manifest.write_text(json.dumps({"tag": _native.build_tag(), "modules": {"pkg.a": hashes["pkg.a"]}}))
    assert _native.stale_reason(manifest, root) == "the list of compiled modules changed"
    manifest.write_text("{not json")
    assert "unreadable build record" in (_native.stale_reason(manifest, root) or "")


def test_the_source_first_finder_loads_listed_modules_from_their_py_files(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    finder = _native.SourceFirstFinder(MODULES, root)
    spec = finder.find_spec("pkg.sub.b", None)
    assert spec is not None and spec.origin == str(root / "pkg" / "sub" / "b.py")
    assert finder.find_spec("pkg.other", None) is None


def test_the_source_first_finder_hides_the_c_helpers(tmp_path: Path) -> None:
    finder = _native.SourceFirstFinder(MODULES, _tree(tmp_path), hidden=("pkg._fast",))
    with pytest.raises(ModuleNotFoundError, match="pure Python"):
        finder.find_spec("pkg._fast", None)


def test_an_edited_c_helper_makes_the_build_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "COMPILED_MODULES", MODULES)
    monkeypatch.setattr(_native, "C_HELPERS", {"pkg._fast": "pkg/_fast.c"})
    root = _tree(tmp_path)
    (root / "pkg" / "_fast.c").write_text("int x;\n")
    manifest = tmp_path / "build.json"
    hashes = _native.source_hashes(_native.built_modules(), root)
    assert set(hashes) == {"pkg.a", "pkg.sub.b", "pkg._fast"}
    manifest.write_text(json.dumps({"tag": _native.build_tag(), "modules": hashes}))
    assert _native.stale_reason(manifest, root) is None
    (root / "pkg" / "_fast.c").write_text("int y;\n")
    assert _native.stale_reason(manifest, root) == "sources changed since the build (pkg._fast)"


def _loaded_from(env: dict[str, str]) -> tuple[str, str, str]:
    code = (
        "import forecourt, forecourt.http.server as s, forecourt.state.shared_table as t;"
        "print(forecourt.NATIVE_STATUS); print(s.__file__); print(t._TAKE_HOME is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return out[0], out[1], out[2]


def test_pure_python_can_be_forced_and_a_current_build_is_used() -> None:
    env = {k: v for k, v in os.environ.items() if k != _native.PURE_PYTHON_ENV}
    status, origin, c_helper = _loaded_from({**env, _native.PURE_PYTHON_ENV: "1"})
    assert status.startswith("pure Python") and origin.endswith("server.py") and c_helper == "False"
    status, origin, c_helper = _loaded_from(env)
    if _native.stale_reason() is None:  # `make test` builds first: this is the branch CI takes
        assert status.startswith("compiled") and origin.endswith(".so") and c_helper == "True"
    else:
        assert status.startswith("pure Python") and origin.endswith("server.py") and c_helper == "False"
