"""Body mappings: a declarative description of a JSON document built from another one.

A mapping is written as the document it produces. Each value says where an output value comes from:

* a string is a JMESPath expression evaluated against the source document
  (`availableQuantity: to_number(qty_avail)`); a string containing `$(...)` is instead a request
  template (`forecourt.plugins.templates`: `$(uri_captures.productId)`, `$(headers.x-tenant)`),
  rendered as a string;
* a nested mapping is a nested output object (`location: {warehouse: loc_id, aisle: aisle_no}`);
* `{each: EXPRESSION, map: MAPPING}` is a collection: EXPRESSION selects a list from the source
  and MAPPING (any of these forms) is applied to each element, which is then the source document
  (`items: {each: records, map: {sku: code}}`). A single value where a list was expected is taken
  as a one-element list, a frequent legacy quirk; null stays null.

The root may be any of the three forms (a collection root produces a JSON array). Output fields keep
the order they are written in. Next to the mapping, `types` and `defaults` are keyed by output path
(`availableQuantity`, `location.aisle`, `items[].qty`, `items`): `types` coerces a field's value
(`coercion.py`), `defaults` replaces a null or missing value (after coercion), and `drop_nulls`
leaves fields whose value is still null out of their object.

Everything is checked and compiled at config load: expressions (syntax, function names and
arities), templates, type names, and that every `types`/`defaults` path names a mapped field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainValidator, TypeAdapter
from pydantic_core import InitErrorDetails, ValidationError

from forecourt.plugins.templates import Template, TemplateError, compile_template
from forecourt.plugins.translate.coercion import Coercion, named_coercion
from forecourt.plugins.translate.expressions import Expression, compile_expression

if TYPE_CHECKING:
    from forecourt.plugins.templates import TemplateSource

__all__ = [
    "ExpressionText",
    "MappingSpec",
    "Node",
    "TypeName",
    "check_paths",
    "compile_mapping",
]

_FORMS = "a JMESPath expression (a string), a nested mapping, or {each: EXPRESSION, map: MAPPING}"


# ---------------------------------------------------------------------- runtime nodes
class Node(Protocol):
    """A compiled mapping node: the output value for one source document."""

    def evaluate(self, document: Any, source: TemplateSource | None) -> Any: ...


class _Leaf:
    __slots__ = ("coerce", "default", "expression", "template")

    def __init__(self, spec: str) -> None:
        self.expression: Expression | None = None
        self.template: Template | None = None
        if "$(" in spec:
            self.template = compile_template(spec)
        else:
            self.expression = compile_expression(spec)
        self.coerce: Coercion | None = None
        self.default: Any = None

    def evaluate(self, document: Any, source: TemplateSource | None) -> Any:
        if self.template is not None:
            value: Any = self.template.render(source)
        else:
            assert self.expression is not None
            value = self.expression.search(document)
        if value is not None and self.coerce is not None:
            value = self.coerce(value)
        # A default is shared by every evaluation: the output is serialized, never mutated.
        return self.default if value is None else value


class _Object:
    __slots__ = ("drop_nulls", "fields")

    def __init__(self, fields: tuple[tuple[str, Node], ...], drop_nulls: bool) -> None:
        self.fields = fields
        self.drop_nulls = drop_nulls

    def evaluate(self, document: Any, source: TemplateSource | None) -> Any:
        out: dict[str, Any] = {}
        for key, node in self.fields:
            value = node.evaluate(document, source)
            if value is None and self.drop_nulls:
                continue
            out[key] = value
        return out


class _Collection:
    __slots__ = ("default", "expression", "item")

    def __init__(self, expression: Expression, item: Node) -> None:
        self.expression = expression
        self.item = item
        self.default: Any = None

    def evaluate(self, document: Any, source: TemplateSource | None) -> Any:
        items = self.expression.search(document)
        if items is None:
            return self.default
        if not isinstance(items, list):
            items = [items]
        item = self.item
        return [item.evaluate(element, source) for element in items]


def compile_mapping(
    spec: Any,
    types: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    *,
    drop_nulls: bool = False,
) -> Node:
    """Compile a (validated) mapping with its `types` and `defaults`; ValueError names the path."""
    nodes: dict[str, Node] = {}
    root = _compile(spec, "", nodes, drop_nulls)
    for path, name in (types or {}).items():
        leaf = nodes.get(path)
        if not isinstance(leaf, _Leaf):
            raise ValueError(f"types.{path}: {_not_a_field(path, nodes)}")
        leaf.coerce = named_coercion(name)
    for path, value in (defaults or {}).items():
        node = nodes.get(path)
        if not isinstance(node, _Leaf | _Collection):
            raise ValueError(f"defaults.{path}: {_not_a_field(path, nodes)}")
        node.default = value
    return root


def _compile(spec: Any, path: str, nodes: dict[str, Node], drop_nulls: bool) -> Node:
    node: Node
    if isinstance(spec, str):
        node = _Leaf(spec)
    elif isinstance(spec, dict) and "each" in spec:
        item = _compile(spec["map"], path + "[]", nodes, drop_nulls)
        node = _Collection(compile_expression(spec["each"]), item)
    elif isinstance(spec, dict):
        fields = tuple(
            (key, _compile(value, f"{path}.{key}" if path else key, nodes, drop_nulls))
            for key, value in spec.items()
        )
        node = _Object(fields, drop_nulls)
    else:
        raise ValueError(f"{path or 'body'}: expected {_FORMS}")
    if path:
        nodes[path] = node
    return node


def _not_a_field(path: str, nodes: dict[str, Node]) -> str:
    node = nodes.get(path)
    if isinstance(node, _Object):
        return "names a nested object, which always has a value; set its fields instead"
    if isinstance(node, _Collection):
        return f"names a collection; types apply to its elements ({path}[]) or their fields"
    known = ", ".join(sorted(nodes)) or "none"
    return f"names no mapped field (mapped: {known})"


def paths(spec: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every output path of a mapping with its kind: `field`, `object` or `collection`."""
    if isinstance(spec, dict) and "each" in spec:
        if prefix:
            yield prefix, "collection"
        yield from paths(spec.get("map"), prefix + "[]")
    elif isinstance(spec, dict):
        if prefix:
            yield prefix, "object"
        for key, value in spec.items():
            yield from paths(value, f"{prefix}.{key}" if prefix else key)
    elif prefix:
        yield prefix, "field"


# ---------------------------------------------------------------------- config validation
def _check_leaf(spec: str) -> None:
    if "$(" in spec:
        try:
            compile_template(spec)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    else:
        compile_expression(spec)


def _check_node(value: Any) -> Any:
    """Validate one mapping value; nested errors keep their own key path (pydantic merges them)."""
    if isinstance(value, str):
        _check_leaf(value)
        return value
    if isinstance(value, dict):
        if not value:
            raise ValueError("an empty mapping maps nothing")
        if "each" in value:
            _CollectionSpec.model_validate(value)
            return value
        return _OBJECT_ADAPTER.validate_python(value)
    raise ValueError(f"expected {_FORMS}; write constants as JMESPath literals (`42`, 'text')")


def _check_root(value: Any) -> Any:
    return None if value is None else _check_node(value)


def _check_expression(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a JMESPath expression (a string)")
    compile_expression(value)
    return value


def _check_type(name: str) -> str:
    named_coercion(name)
    return name


_NodeSpec = Annotated[Any, PlainValidator(_check_node)]
MappingSpec = Annotated[Any, PlainValidator(_check_root)]
"""A mapping (or null) in a config schema; validated as described above, kept as plain JSON."""
ExpressionText = Annotated[str, PlainValidator(_check_expression)]
"""A JMESPath expression in a config schema, checked at load."""
TypeName = Annotated[str, AfterValidator(_check_type)]
"""A coercion name (`int`, `date:%d/%m/%Y`, ...) in a config schema."""


class _CollectionSpec(BaseModel):
    """`{each, map}`: validated for its key paths; the config keeps the plain mapping."""

    model_config = ConfigDict(extra="forbid")

    each: ExpressionText
    map: _NodeSpec


_OBJECT_ADAPTER: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, _NodeSpec])


def _value_error(loc: tuple[str | int, ...], value: Any, message: str) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})


def check_paths(
    spec: Any, types: Mapping[str, str], defaults: Mapping[str, Any], where: str = "body"
) -> None:
    """Raise a ValidationError at `types.<path>` / `defaults.<path>` for paths the mapping lacks."""
    kinds = dict(paths(spec))
    errors: list[InitErrorDetails] = []
    for section, entries, allowed in (
        ("types", types, ("field",)),
        ("defaults", defaults, ("field", "collection")),
    ):
        for path, value in entries.items():
            kind = kinds.get(path)
            if kind in allowed:
                continue
            if spec is None:
                message = f"there is no {where} mapping"
            elif kind == "object":
                message = "names a nested object, which always has a value; set its fields instead"
            elif kind == "collection":
                message = f"names a collection; types apply to its elements ({path}[]) or their fields"
            else:
                fields = ", ".join(p for p, k in kinds.items() if k in allowed) or "none"
                message = f"names no mapped field (fields: {fields})"
            errors.append(_value_error((section, path), value, message))
    if errors:
        raise ValidationError.from_exception_data("mapping", errors)
