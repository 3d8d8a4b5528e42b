"""`translate`: the anti-corruption layer at the gateway (ARCHITECTURE.md §1).

`TranslatePlugin` maps a clean API onto a legacy or third-party one from configuration: request
path, method, query, headers and JSON body one way; response JSON body, headers and errors (as RFC
9457 problem details) the other. `Translator` is the base class for translators written in Python,
with the same plumbing and two hooks, `to_upstream` and `from_upstream`. See docs/plugins/translate.md.
"""

from forecourt.plugins.translate.coercion import named_coercion
from forecourt.plugins.translate.expressions import Expression, compile_expression
from forecourt.plugins.translate.mapping import compile_mapping
from forecourt.plugins.translate.plugin import TranslatePlugin
from forecourt.plugins.translate.problem import PROBLEM_CONTENT_TYPE
from forecourt.plugins.translate.schema import TranslateConfig
from forecourt.plugins.translate.translator import (
    DEFAULT_PRIORITY,
    OutboundRequest,
    TranslatedResponse,
    Translator,
    UpstreamResponse,
    problem_response,
)

__all__ = [
    "DEFAULT_PRIORITY",
    "PROBLEM_CONTENT_TYPE",
    "Expression",
    "OutboundRequest",
    "TranslateConfig",
    "TranslatePlugin",
    "TranslatedResponse",
    "Translator",
    "UpstreamResponse",
    "compile_expression",
    "compile_mapping",
    "named_coercion",
    "problem_response",
]
