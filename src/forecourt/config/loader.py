"""Entry points: a config file (or text) in, a validated `GatewayConfig` or one `ConfigError` out."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel

from forecourt.config.document import read_declarations
from forecourt.config.errors import ConfigError, ConfigIssue
from forecourt.config.model import GatewayConfig
from forecourt.config.references import resolve_config
from forecourt.config.validation import IssueLog
from forecourt.config.yaml_source import read_document


def load_config(
    path: str | os.PathLike[str], plugin_schemas: Mapping[str, type[BaseModel]] | None = None
) -> GatewayConfig:
    """Read and validate a declarative config file (YAML, or JSON when named `*.json`).

    `plugin_schemas` maps each plugin name Forecourt can run to its config model; a plugin whose
    name is not in it is an error. Raises `ConfigError` listing every problem found.
    """
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(filename, None, "", "cannot read file: not UTF-8 text")]) from exc
    return parse_config(text, filename, plugin_schemas)


def parse_config(
    text: str, filename: str, plugin_schemas: Mapping[str, type[BaseModel]] | None = None
) -> GatewayConfig:
    """Validate config `text`; `filename` names it in errors and picks JSON parsing if `*.json`."""
    document = read_document(text, filename)
    log = IssueLog(document.source)
    log.extend(document.issues)
    assert isinstance(document.data, dict)  # read_document guarantees a mapping
    declarations = read_declarations(document.data, log)
    config = resolve_config(declarations, plugin_schemas if plugin_schemas is not None else {}, log)
    if config is None:
        raise ConfigError(_in_file_order(log.issues))
    return config


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    unique = list(dict.fromkeys(issues))  # a stage may reach the same problem twice
    return sorted(unique, key=lambda issue: issue.line if issue.line is not None else 0)
