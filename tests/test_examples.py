"""Every config in `examples/` passes `forecourt check`, and every pattern in docs/patterns.md
points at an example that exists."""

from __future__ import annotations

import py_compile
import re
import subprocess
import sys
from pathlib import Path

import pytest

from forecourt.gateway import check_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CONFIGS = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
SCRIPTS = sorted(EXAMPLES.rglob("*.py"))


def test_there_are_examples() -> None:
    names = {str(p.relative_to(EXAMPLES)) for p in CONFIGS}
    assert {"single-gateway.yaml", "bff/mobile.yaml", "bff/web.yaml", "bff/partner.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = check_files([str(path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.strip() == f"{path}: ok"


def test_forecourt_check_accepts_every_example_at_once() -> None:
    """The command itself, as a user (or a team's CI) runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "forecourt.cli", "check", *map(str, CONFIGS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_scripts_compile(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_every_example_named_in_the_docs_exists() -> None:
    named: set[str] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named |= set(re.findall(r"examples/[\w./-]+\.(?:yaml|yml|json|py)", doc.read_text()))
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert not missing, f"named in docs but missing: {missing}"


def test_patterns_guide_points_at_a_runnable_example_for_each_pattern() -> None:
    text = (ROOT / "docs" / "patterns.md").read_text()
    for pattern in (
        "Single gateway",
        "Backend for Frontend",
        "Server-side discovery",
        "Client-side discovery",
        "Gateway aggregation",
        "Gateway offloading",
        "Anti-corruption layer",
    ):
        section = re.search(rf"^## {pattern}.*?(?=^## |\Z)", text, re.S | re.M)
        assert section is not None, f"docs/patterns.md has no section for {pattern}"
        assert re.search(r"examples/[\w./-]+", section.group(0)), f"{pattern}: no example named"
