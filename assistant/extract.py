"""JSON extraction: text in, JSON that validates against a JSON Schema (draft 2020-12) out, or a clear error.

    from assistant.extract import extract
    extract("Ada Lovelace (born 1815) was an English mathematician.", "name:str, born:int, city:str?",
            model="smollm2-135m")                       # {'name': 'Ada Lovelace', 'born': 1815}
    extract(text, Person, model=backend)                # a pydantic model class: returns a Person
    extract(text, schema_dict, many=True)               # a list of such objects

Decoding is constrained to the schema where the backend can do it (llama.cpp grammars, `response_format` for
OpenAI-compatible servers; transformers only asks for it in the prompt). The output is always validated; a
failure is shown to the model once (pydantic-ai's ModelRetry, in prompt form), and a second one raises
`ExtractionError`, which names the failing field and keeps the raw output. A schema that llama.cpp's grammar
converter rejects is an error up front (`SchemaError`, suggesting `constrain=False` / `--no-constrain`), never
a silent fallback; keywords the grammar ignores (minimum, uniqueItems, ...) are named in `notes` and enforced
by validation alone. `--many` wraps the schema as `{"items": [...]}` (OpenAI-style servers want an object at
the top) and unwraps the answer. The CLI is assistant/cli_extract.py; the field shorthand is `parse_fields`.

Small models repeat a list item until they are stopped (assistant/runaway.py). Every array in the decoded
schema is bounded (its own `maxItems`, else one item per word of the text), and the stream is watched: at the
first item that repeats an earlier one, decoding stops and the list is closed before it; what came before is
validated like any reply, and `notes` says so. A reply that looped or ran to max_tokens is not shown again (it
primes the same loop): the retry names the problem and samples (`RETRY_TEMPERATURE`, seeded).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from assistant.errors import AssistantError, BadInput
from assistant.models.base import Completion, GenerationOptions, Message, ModelBackend, Usage
from assistant.runaway import RepeatWatch, bound_arrays, item_limit

MANY_KEY = "items"
SYSTEM = (
    "Extract information from the user's text as JSON. Reply with only a JSON value that matches this JSON "
    "Schema:\n{schema}\nCopy names and values as the text writes them, in its language, changing only what "
    "the schema's format asks for. Leave out optional fields the text does not state; never guess."
)
RETRY = "That reply is not valid: {problem}. Reply with only the corrected JSON."
# A model that looped under greedy decoding loops again on a greedy retry (SmolLM2: "The City of the City of ...",
# both times); a sampled retry, seeded so runs repeat, mostly leaves the loop. Only after a loop or a cut at
# max_tokens; any other invalid reply is shown to the model and retried greedily.
RETRY_TEMPERATURE = 0.7
_RUNAWAY = ("repeat", "repeat-item", "length", "max_tokens")
# Validation keywords llama.cpp's JSON-schema grammar converter ignores: enforced by validation alone.
_UNENFORCED = {
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems", "not", "if",
    "dependentRequired", "dependentSchemas", "minProperties", "maxProperties", "contains", "patternProperties",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems",
}  # fmt: skip
_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_TYPES |= {t: t for t in list(_TYPES.values())}
_FIELD = re.compile(r"([A-Za-z_][\w-]*)\s*(?::\s*(.+?))?\s*(\?)?")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
# A unit of 8+ characters repeated 5 times at the end: a model looping (grammars make JSON well-formed, not finite).
_LOOP = re.compile(r"(.{8,200}?)\1{4,}$", re.S)


class SchemaError(BadInput):
    """The schema is not valid JSON Schema, or cannot be decoded under a grammar."""


class ExtractionError(AssistantError):
    """The model's output failed validation twice: `field` is where, `raw` what it wrote (last attempt)."""

    def __init__(self, field: str, reason: str, raw: str, attempts: int):
        self.field, self.reason, self.raw, self.attempts = field, reason, raw, attempts
        what = "output is not usable JSON" if field == "(output)" else f"JSON fails the schema at `{field}`"
        super().__init__(f"the model's {what}: {reason} (after {attempts} attempts)")


@dataclass
class Target:
    """What to extract: the user's schema, the one decoding is constrained to, and how to unwrap the answer."""

    schema: dict[str, Any]
    many: bool = False
    model_cls: type[BaseModel] | None = None

    @property
    def wire(self) -> dict[str, Any]:
        """The schema the model decodes under: `many` wraps the list in an object (its $defs at the root)."""
        if not self.many:
            return self.schema
        item = {k: v for k, v in self.schema.items() if k not in ("$defs", "$schema")}
        wrapped = {"type": "object", "properties": {MANY_KEY: {"type": "array", "items": item}}}
        return wrapped | {"required": [MANY_KEY], **({"$defs": self.schema["$defs"]} if "$defs" in self.schema else {})}

    @property
    def answer_schema(self) -> dict[str, Any]:
        """The schema the unwrapped answer must satisfy."""
        if not self.many:
            return self.schema
        return {"type": "array", "items": self.wire["properties"][MANY_KEY]["items"]} | (
            {"$defs": self.schema["$defs"]} if "$defs" in self.schema else {}
        )


@dataclass
class Extraction:
    """One extraction: the data, what the model wrote, and what it cost."""

    data: Any
    raw: str
    attempts: int
    constrained: bool
    problems: list[str] = field(default_factory=list)  # one per failed attempt
    notes: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0


def parse_fields(spec: str) -> dict[str, Any]:
    """`"name:str, age:int, city:str?, tags:list[str], role:{actor|director}"` as an object schema."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for part in _split_top(spec):
        match = _FIELD.fullmatch(part.strip())
        if not match:
            raise SchemaError(f"cannot read the field {part.strip()!r} — write name:type, e.g. age:int or city:str?")
        name, kind, optional = match.groups()
        if name in properties:
            raise SchemaError(f"the field {name!r} is given twice in --fields")
        prop = _field_type(kind or "str")
        if optional:  # null lets a model say "not stated" instead of inventing a value
            prop = {"enum": [*prop["enum"], None]} if "enum" in prop else prop | {"type": [prop["type"], "null"]}
        else:
            required.append(name)
        properties[name] = prop
    if not properties:
        raise SchemaError('--fields is empty — e.g. --fields "name:str, age:int, city:str?"')
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _split_top(spec: str) -> list[str]:
    """Split on commas outside [] and {}."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(spec):
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    return [p for p in [*parts, spec[start:]] if p.strip()]


def _field_type(kind: str) -> dict[str, Any]:
    kind = kind.strip()
    if inner := re.fullmatch(r"list\[(.+)\]", kind):
        return {"type": "array", "items": _field_type(inner[1])}
    if kind.startswith("{") and kind.endswith("}"):
        values = [v.strip() for v in kind[1:-1].split("|")]
        if not all(values):
            raise SchemaError(f"empty choice in {kind} — write {{a|b|c}}")
        return {"enum": values}
    if kind.lower() not in _TYPES:
        raise SchemaError(f"unknown type {kind!r} in --fields — use str, int, float, bool, list[T] or {{a|b}}")
    return {"type": _TYPES[kind.lower()]}


def load_schema(source: dict[str, Any] | str | Path | type[BaseModel]) -> tuple[dict[str, Any], type[BaseModel] | None]:
    """A checked draft 2020-12 schema from a dict, a pydantic model class, a Path, JSON text or the --fields form."""
    model_cls = None
    if isinstance(source, type) and issubclass(source, BaseModel):
        model_cls, schema = source, source.model_json_schema()
    elif isinstance(source, Path):  # only a Path reads a file: a string from a model never does
        path = source.expanduser()
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise SchemaError(f"cannot read the schema {path}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise SchemaError(f"{path} is not JSON: {e.msg} at line {e.lineno}") from None
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            schema = json.loads(source)
        except json.JSONDecodeError as e:
            raise SchemaError(f"the schema is not JSON: {e.msg} at character {e.pos}") from None
    elif isinstance(source, str):
        schema = parse_fields(source)
    else:
        schema = source
    check_schema(schema)
    return schema, model_cls


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless `schema` is a valid draft 2020-12 JSON Schema object."""
    from jsonschema import Draft202012Validator
    from jsonschema import SchemaError as Invalid

    if not isinstance(schema, dict):
        raise SchemaError(f"a JSON Schema must be an object, not {type(schema).__name__}")
    try:
        Draft202012Validator.check_schema(schema)
    except Invalid as e:
        where = "/".join(map(str, e.absolute_path)) or "the top level"
        raise SchemaError(f"invalid JSON Schema at {where}: {e.message}") from None


def grammar_problem(schema: dict[str, Any]) -> str | None:
    """Why llama.cpp's converter cannot make a grammar of `schema`, or None."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter raises ValueError, AssertionError, KeyError, ...
        return str(e) or type(e).__name__
    return None if "root ::=" in grammar else "the converter produced no root rule"


def unenforced(schema: Any) -> list[str]:
    """Validation keywords in `schema` (and its subschemas) that llama.cpp grammars do not enforce."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        found |= _UNENFORCED & node.keys()
        for key in ("properties", "$defs", "dependentSchemas"):
            stack += list((node.get(key) or {}).values())
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            stack += node.get(key) or []
        stack += [node.get(k) for k in ("items", "additionalProperties", "not", "if", "then", "else", "contains")]
    return sorted(found)


def parse_json(raw: str) -> Any:
    """The JSON value in a reply: bare, in a ``` fence, or the first object/array in surrounding text."""
    text = raw.strip()
    if fence := _FENCE.search(text):
        text = fence[1].strip()
    try:
        return json.loads(text, strict=False)  # grammars admit raw control characters inside strings
    except json.JSONDecodeError as e:
        starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
        if starts:
            try:
                return json.JSONDecoder(strict=False).raw_decode(text, min(starts))[0]
            except json.JSONDecodeError:
                pass
        raise ValueError(f"it is not JSON ({e.msg} at character {e.pos})") from None


def field_name(path: list[Any]) -> str:
    """`people[0].name` for a path of keys and indexes; `(top level)` for the empty path."""
    out = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return out or "(top level)"


def find_problem(target: Target, data: Any) -> tuple[str, str] | None:
    """(field, reason) of the most relevant way `data` fails the target, or None if it validates."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(target.answer_schema).iter_errors(data))
    if error is not None:
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            path += [next(p for p in error.validator_value if p not in error.instance)]
        return field_name(path), error.message
    if target.model_cls is not None:
        for i, item in enumerate(data if target.many else [data]):
            try:
                target.model_cls.model_validate(item)
            except ValidationError as e:
                first = e.errors()[0]
                return field_name(([i] if target.many else []) + list(first["loc"])), first["msg"]
    return None


def run_extraction(
    text: str,
    target: Target,
    model: ModelBackend,
    *,
    constrain: bool = True,
    max_tokens: int | None = None,
) -> Extraction:
    """Extract `target` from `text` with `model`: validate, retry once with the problem shown, or raise."""
    if not text.strip():
        raise BadInput("the text is empty — pass the text to extract from (an argument, --file or stdin)")
    wire, notes = target.wire, []
    decoded = bound_arrays(wire, item_limit(text))
    if constrain and model.grammar_from_schema and (why := grammar_problem(decoded)):
        raise SchemaError(
            f"llama.cpp cannot turn this schema into a grammar ({why}) — simplify it, or extract without a "
            "grammar (--no-constrain; the output is still validated)"
        )
    if constrain and not model.supports_schema:
        notes.append(f"{model.name} cannot be held to a schema while decoding: it is asked for in the prompt only")
    elif constrain and (loose := unenforced(wire)):
        notes.append(f"not enforced while decoding, checked afterwards: {', '.join(loose)}")
    schema_text = json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
    messages = [Message("system", SYSTEM.format(schema=schema_text)), Message("user", text.strip())]
    # The JSON copies from the text: more than twice its length plus room for keys is a model repeating itself.
    max_tokens = max_tokens or min(1024, 128 + 2 * model.count_tokens(text))
    options = GenerationOptions(max_tokens=max_tokens, json_schema=decoded if constrain else None)
    usage, start = Usage(), time.perf_counter()
    problems: list[str] = []
    for attempt in (1, 2):
        done, closed = decode(model, messages, options)
        usage = usage + done.usage
        data, found = judge(closed, target, cut=done.finish_reason, max_tokens=max_tokens)
        if found is None:
            if done.finish_reason == "repeat-item":
                notes.append("the model repeated a list item: the list was closed before the repeat")
            return Extraction(data, done.text, attempt, constrain, problems, notes, usage, time.perf_counter() - start)
        problems.append(found[1] if found[0] == "(output)" else f"at `{found[0]}`: {found[1]}")
        if attempt == 2:
            raise ExtractionError(found[0], found[1], done.text, attempt)
        if done.finish_reason in _RUNAWAY:
            # Shown its loop, even cut short, SmolLM2 loops again, sampling or not: it is told what went wrong
            # and samples (seeded, so runs repeat) a fresh reply.
            messages = [*messages, Message("user", RETRY.format(problem=problems[-1]))]
            options = replace(options, temperature=RETRY_TEMPERATURE, seed=options.seed or 0)
        else:
            shown = done.text if len(done.text) <= 800 else done.text[:800] + " …"
            messages += [Message("assistant", shown), Message("user", RETRY.format(problem=problems[-1]))]
    raise AssertionError("unreachable")


def decode(model: ModelBackend, messages: list[Message], options: GenerationOptions) -> tuple[Completion, str]:
    """`generate`, stopped early once an array item repeats an earlier one (finish_reason "repeat-item") or the
    text ends in a loop ("repeat"); and the text to judge: after a repeated item, the JSON closed before it."""
    stream = model.stream(messages, options)
    parts: list[str] = []
    watch = RepeatWatch()
    try:
        for item in stream:
            if isinstance(item, Completion):
                return item, item.text
            parts.append(item)
            if (closed := watch.feed(item)) is not None:
                return Completion("".join(parts), usage=Usage(0, len(parts)), finish_reason="repeat-item"), closed
            if len(parts) % 8 == 0 and _LOOP.search("".join(parts)[-1000:]):
                text = "".join(parts)
                return Completion(text, usage=Usage(0, len(parts)), finish_reason="repeat"), text
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # ends the backend's decoding loop
    raise AssistantError(f"the backend {model.name} ended its stream without a Completion")


def judge(raw: str, target: Target, *, cut: str = "stop", max_tokens: int = 0) -> tuple[Any, tuple[str, str] | None]:
    """(data, None) if `raw` holds JSON that fits the target, else (None, (field, reason)); `cut` is the
    finish reason, which explains output that is not JSON."""
    try:
        data = parse_json(raw)
    except ValueError as e:
        if cut == "repeat" and (loop := _LOOP.search(raw[-1000:])):
            return None, ("(output)", f"it repeated {loop[1][:60]!r} over and over, and was stopped")
        cut_off = cut in ("length", "max_tokens")
        return None, ("(output)", f"it was cut off at {max_tokens} tokens" if cut_off else str(e))
    if target.many and isinstance(data, dict) and MANY_KEY in data:
        data = data[MANY_KEY]
    found = find_problem(target, data)
    return (data, None) if found is None else (None, found)


_LOADED: dict[str | None, ModelBackend] = {}


def _model(model: ModelBackend | str | None) -> ModelBackend:
    """A backend as given, or loaded by preset name/path (once per process); None: the configured default."""
    if model is not None and not isinstance(model, str):
        return model
    if model not in _LOADED:
        from assistant.models import load_model
        from assistant.settings import load_settings

        _LOADED[model] = load_model(load_settings(model=model))
    return _LOADED[model]


def extract(
    text: str,
    schema: dict[str, Any] | str | Path | type[BaseModel],
    model: ModelBackend | str | None = None,
    *,
    many: bool = False,
    constrain: bool = True,
    max_tokens: int | None = None,
) -> Any:
    """Data from `text` that validates against `schema` (a pydantic class gives instances); raises ExtractionError."""
    checked, model_cls = load_schema(schema)
    target = Target(checked, many, model_cls)
    data = run_extraction(text, target, _model(model), constrain=constrain, max_tokens=max_tokens).data
    if model_cls is None:
        return data
    return [model_cls.model_validate(d) for d in data] if many else model_cls.model_validate(data)
