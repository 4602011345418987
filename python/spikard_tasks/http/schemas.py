"""JSON Schemas of task arguments for the OpenAPI document of the HTTP enqueue app, by
pydantic (``TypeAdapter(annotation).json_schema()``): any annotation pydantic knows
(scalars, containers, ``Literal``, unions, ``TypedDict``, dataclasses, models, dates,
UUIDs, …) gets its schema; one it cannot describe is permissive (``{}``).

Only the document uses these schemas: requests are checked as before (the arguments
must bind to the handler's signature) and reach the handler as decoded JSON."""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import TypeAdapter

__all__ = ["REF_PREFIX", "annotation_schema", "call_schemas"]

#: Where the named schemas of models, dataclasses, … are put in the document.
REF_PREFIX = "#/components/schemas/"

#: An enqueueable task's handler (``None`` when it is not registered in this process).
Handler = Callable[..., Any] | None
#: One parameter of a handler: name, annotation, kind, default.
_Param = tuple[str, Any, inspect._ParameterKind, Any]


def _build(tp: Any) -> TypeAdapter[Any] | None:
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(tp)
        adapter.json_schema()  # some types build but have no JSON Schema (Callable, …)
    except Exception:  # PydanticSchemaGenerationError, PydanticInvalidForJsonSchema, …
        return None
    return adapter


_cached_build = functools.lru_cache(maxsize=1024)(_build)


def _adapter(tp: Any) -> TypeAdapter[Any] | None:
    """The pydantic adapter of ``tp`` when pydantic can describe it, else ``None``."""
    if tp is Any or tp is inspect.Parameter.empty:
        return None
    try:
        return _cached_build(tp)
    except TypeError:  # unhashable metadata (e.g. in Annotated)
        return _build(tp)


def annotation_schema(tp: Any) -> dict[str, Any]:
    """A JSON Schema for a parameter annotation (named sub-schemas under ``$defs``);
    ``{}`` (anything) when pydantic cannot describe ``tp``."""
    adapter = _adapter(tp)
    return {} if adapter is None else adapter.json_schema()


@functools.lru_cache(maxsize=512)
def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references, exotic callables
        return {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _is_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


def _params(fn: Handler) -> list[_Param] | None:
    signature = _signature(fn) if fn is not None else None
    if fn is None or signature is None:
        return None
    try:
        hints = _hints(fn)
    except TypeError:  # unhashable callable
        hints = {}
    return [
        (p.name, hints.get(p.name, Any), p.kind, p.default) for p in signature.parameters.values()
    ]


def _arguments(params: list[_Param] | None, schemas: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The ``args`` and ``kwargs`` properties of a call's body; ``schemas[i]`` is the
    schema of parameter ``i`` (absent: permissive)."""
    args: dict[str, Any] = {"type": "array"}
    kwargs: dict[str, Any] = {"type": "object"}
    if params is None:
        return {"args": args, "kwargs": kwargs}
    positional: list[dict[str, Any]] = []
    properties: dict[str, Any] = {}
    rest_args: dict[str, Any] | bool = False
    rest_kwargs: dict[str, Any] | bool = False
    P = inspect.Parameter
    for i, (name, _, kind, default) in enumerate(params):
        schema = dict(schemas.get(i, {}))
        if default is not P.empty and _is_json(default):
            schema["default"] = default
        if kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            positional.append({"title": name, **schema})
        if kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            properties[name] = schema
        if kind is P.VAR_POSITIONAL:
            rest_args = schema or True
        if kind is P.VAR_KEYWORD:
            rest_kwargs = schema or True
    if positional:
        args["prefixItems"] = positional
    args["items"] = rest_args
    kwargs["properties"] = properties
    kwargs["additionalProperties"] = rest_kwargs
    return {"args": args, "kwargs": kwargs}


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rename_refs(v, renames) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            name = ref[len(REF_PREFIX) :]
            out["$ref"] = REF_PREFIX + renames.get(name, name)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def call_schemas(
    handlers: Sequence[Handler], taken: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``args``/``kwargs`` schemas of calls to each handler (permissive for
    ``None`` or an uninspectable one), and the named schemas they refer to
    (``REF_PREFIX + name``), generated together so that names never collide; a name in
    ``taken`` (the document's own schemas) gets a suffix."""
    params = [_params(fn) for fn in handlers]
    inputs: list[tuple[tuple[int, int], Any, TypeAdapter[Any]]] = []
    for h, plist in enumerate(params):
        for i, (_, tp, _, _) in enumerate(plist or ()):
            adapter = _adapter(tp)
            if adapter is not None:
                inputs.append(((h, i), "validation", adapter))
    by_key: dict[Any, dict[str, Any]] = {}
    defs: dict[str, Any] = {}
    if inputs:
        generated, top = TypeAdapter.json_schemas(inputs, ref_template=REF_PREFIX + "{model}")
        defs = dict(top.get("$defs", {}))
        by_key = {key: schema for (key, _), schema in generated.items()}
    renames: dict[str, str] = {}
    for name in sorted(set(defs) & taken):
        new = name + "_"
        while new in taken or new in defs or new in renames.values():
            new += "_"
        renames[name] = new
    if renames:
        defs = {renames.get(k, k): _rename_refs(v, renames) for k, v in defs.items()}
        by_key = {k: _rename_refs(v, renames) for k, v in by_key.items()}
    calls = []
    for h, plist in enumerate(params):
        schemas = {i: s for (hh, i), s in by_key.items() if hh == h}
        calls.append(_arguments(plist, schemas))
    return calls, defs
