"""JSON extraction (assistant/extract.py), its tool (tools/extract_json.py) and its eval (evals/extraction.py).

The retry logic runs against the scripted fake model; two tests at the end run the real bundled SmolLM2 under
llama.cpp grammars. Texts are real passages from the labelled set (evals/data/README.md has their sources).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import BaseModel

from assistant.evals.extraction import ExtractionCase, ExtractionTask, leaves, load_cases, markdown, normalize, run_eval
from assistant.extract import (
    MANY_KEY,
    ExtractionError,
    SchemaError,
    Target,
    extract,
    grammar_problem,
    load_schema,
    parse_fields,
    run_extraction,
    unenforced,
)
from assistant.tools import ToolContext, ToolRetry, all_tools, default_tools
from assistant.web import FetchPolicy

CASES = {c.id: c for c in load_cases()}
GRENNA = CASES["grennaskolan"].text  # "... located in Gränna, Jönköping County ... founded in 1963 ..."
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "born": {"type": "integer"},
        "spouse": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    },
    "required": ["name", "born"],
}


def target(schema: dict | str, many: bool = False) -> Target:
    return Target(load_schema(schema)[0], many)


def test_fields_shorthand_is_a_strict_object_schema():
    schema = parse_fields("name:str, age:int, city:str?, tags:list[str], role:{actor|film director}, score:float?, ok")
    props = schema["properties"]
    assert props["name"] == {"type": "string"} and props["ok"] == {"type": "string"}
    assert props["age"] == {"type": "integer"} and props["score"] == {"type": ["number", "null"]}
    assert props["city"] == {"type": ["string", "null"]}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["role"] == {"enum": ["actor", "film director"]}
    assert schema["required"] == ["name", "age", "tags", "role", "ok"]
    assert schema["additionalProperties"] is False
    assert parse_fields("role:{a|b}?")["properties"]["role"] == {"enum": ["a", "b", None]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("name:string, age:integer, x:text", "unknown type 'text'"),
        ("name:str, name:int", "given twice"),
        (" , ", "--fields is empty"),
        ("9lives:int", "cannot read the field"),
        ("role:{a||b}", "empty choice"),
    ],
)
def test_fields_shorthand_errors_say_what_to_write(spec: str, message: str):
    with pytest.raises(SchemaError, match=message):
        parse_fields(spec)


def test_an_invalid_schema_is_a_clear_error_naming_where(tmp_path: Path):
    with pytest.raises(SchemaError, match=r"invalid JSON Schema at properties/age/type"):
        load_schema({"type": "object", "properties": {"age": {"type": "int"}}})
    with pytest.raises(SchemaError, match="must be an object"):
        load_schema([{"type": "string"}])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="not JSON"):
        load_schema('{"type": "object",')
    bad = tmp_path / "s.json"
    bad.write_text("{nope")
    with pytest.raises(SchemaError, match=r"s\.json is not JSON"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="cannot read the schema"):
        load_schema(tmp_path / "missing.json")


def test_valid_output_first_time_decodes_under_the_schema(fake_model):
    fake_model.enqueue('{"name": "Grennaskolan Boarding School", "town": "Gränna", "founded": 1963}')
    result = run_extraction(GRENNA, target("name:str, town:str, founded:int, fees:int?"), fake_model)
    assert result.data == {"name": "Grennaskolan Boarding School", "town": "Gränna", "founded": 1963}
    assert result.attempts == 1 and result.problems == [] and result.constrained
    messages, options = fake_model.history[0]
    assert options.json_schema == load_schema("name:str, town:str, founded:int, fees:int?")[0]
    assert '"founded":{"type":"integer"}' in messages[0].content and messages[1].content == GRENNA.strip()


def test_a_validation_error_is_shown_to_the_model_once_and_the_retry_wins(fake_model):
    fake_model.enqueue('{"name": "Grennaskolan", "founded": "in 1963"}', '{"name": "Grennaskolan", "founded": 1963}')
    result = run_extraction(GRENNA, target("name:str, founded:int"), fake_model)
    assert result.data == {"name": "Grennaskolan", "founded": 1963} and result.attempts == 2
    retry = fake_model.history[1][0]
    assert retry[-2].role == "assistant" and "in 1963" in retry[-2].content
    assert (
        retry[-1].role == "user" and "`founded`" in retry[-1].content and "not of type 'integer'" in retry[-1].content
    )
    assert result.problems == ["at `founded`: 'in 1963' is not of type 'integer'"]


def test_two_failures_raise_naming_the_nested_field_and_keeping_the_raw_output(fake_model):
    fake_model.enqueue(
        '{"name": "Robert Childers Barton", "born": 1881, "spouse": {}}',
        '{"name": "Robert Childers Barton", "born": 1881, "spouse": {"from": "Boston"}}',
    )
    with pytest.raises(ExtractionError) as info:
        run_extraction(CASES["barton"].text, Target(PERSON), fake_model)
    assert info.value.field == "spouse.name" and info.value.attempts == 2
    assert info.value.raw.endswith('{"from": "Boston"}}')
    assert "`spouse.name`" in str(info.value) and "required property" in str(info.value)


def test_prose_gets_a_retry_and_fenced_json_is_read(fake_model):
    fake_model.enqueue("The school is in Gränna.", 'Here it is:\n```json\n{"town": "Gränna"}\n```')
    result = run_extraction(GRENNA, target("town:str"), fake_model, constrain=False)
    assert result.data == {"town": "Gränna"} and not result.constrained
    assert all(options.json_schema is None for _, options in fake_model.history)
    assert "not JSON" in fake_model.history[1][0][-1].content


def test_after_a_loop_the_retry_samples_instead_of_looping_again_greedily(fake_model):
    # SmolLM2 on jacksonville-el, greedy both times: {"explorer": "The City of the City of the City of ...
    loop = '{"explorer": "' + "The City of " * 30
    fake_model.enqueue(loop, '{"explorer": "Ζαν Ριμπό"}')
    result = run_extraction(CASES["jacksonville-el"].text, target("explorer:str"), fake_model)
    assert result.data == {"explorer": "Ζαν Ριμπό"} and result.attempts == 2
    first, retry = (options for _, options in fake_model.history)
    assert first.temperature == 0.0 and retry.temperature > 0.0 and retry.seed is not None
    retry_messages = fake_model.history[1][0]
    assert "over and over" in retry_messages[-1].content and "assistant" not in [m.role for m in retry_messages]
    # A reply that is only invalid is retried greedily: the model is shown its mistake, which is enough.
    fake_model.enqueue('{"founded": "in 1963"}', '{"founded": 1963}')
    run_extraction(GRENNA, target("founded:int"), fake_model)
    assert fake_model.history[-1][1].temperature == 0.0


def test_output_cut_at_max_tokens_is_named_as_such(fake_model):
    fake_model.enqueue('{"town": "Gr', '{"town": "Gr')
    fake_model.stream = _cut(fake_model.stream)
    with pytest.raises(ExtractionError, match="cut off at 40 tokens") as info:
        run_extraction(GRENNA, target("town:str"), fake_model, max_tokens=40)
    assert info.value.field == "(output)" and info.value.raw == '{"town": "Gr'


def test_a_model_that_loops_is_stopped_early_and_told_so(fake_model):
    # a loop inside a string: no list item is complete, let alone repeated (tests below cover repeated items)
    loop = '{"items": [{"character": "Prue", "actress": "' + "Prue Doherty " * 30
    fake_model.enqueue(loop, loop)
    with pytest.raises(ExtractionError, match="repeated .*Prue Doherty.* over and over") as info:
        run_extraction(CASES["charmed"].text, target("character:str, actress:str", many=True), fake_model)
    assert info.value.raw.count("Prue Doherty") < 15  # stopped well before the end of the reply
    assert "over and over" in fake_model.history[1][0][-1].content


def _cut(stream):
    def wrapped(messages, options):
        for item in stream(messages, options):
            if not isinstance(item, str):
                item.finish_reason = "length"
            yield item

    return wrapped


def test_every_array_is_bounded_in_the_grammar():
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from assistant.extract import bound_arrays

    schema = parse_fields("name:str, roles:list[str]")
    wire = bound_arrays(Target(schema, many=True).wire, 40)
    assert wire["properties"][MANY_KEY]["maxItems"] == 40
    assert wire["properties"][MANY_KEY]["items"]["properties"]["roles"]["maxItems"] == 40
    assert bound_arrays({"type": "array", "items": {"type": "integer"}, "maxItems": 3}, 40)["maxItems"] == 3
    assert bound_arrays({"type": "array", "minItems": 50}, 40)["maxItems"] == 50  # never below what is required
    assert Target(schema, many=True).wire["properties"][MANY_KEY].get("maxItems") is None  # a copy, not an edit
    free = json_schema_to_gbnf(json.dumps(Target(schema, many=True).wire))
    bounded = json_schema_to_gbnf(json.dumps(wire))
    assert ")*" in free and ")*" not in bounded, bounded


def test_the_default_bound_is_the_number_of_words_a_list_could_copy(fake_model):
    from assistant.extract import item_limit

    # A list copied from a text cannot hold more items than the text has words: "Prue, Piper and Phoebe" has 3 + 1.
    assert item_limit("Prue, Piper and Phoebe") == 4 and item_limit("新約聖書") == 4
    text = CASES["charmed"].text
    fake_model.enqueue(json.dumps({MANY_KEY: CASES["charmed"].expected}))
    run_extraction(text, target("character:str, actress:str", many=True), fake_model)
    assert fake_model.history[0][1].json_schema["properties"][MANY_KEY]["maxItems"] == item_limit(text)
    assert "maxItems" not in fake_model.history[0][0][0].content  # the prompt shows the user's schema


def test_a_repeated_list_item_stops_the_list_and_what_came_before_validates(fake_model):
    prue, piper = CASES["charmed"].expected[:2]
    again = ", ".join([json.dumps(prue)] * 30)
    reply = f'{{"items": [{json.dumps(prue)}, {json.dumps(piper)}, {again}'
    fake_model.enqueue(reply, reply)
    result = run_extraction(CASES["charmed"].text, target("character:str, actress:str", many=True), fake_model)
    assert result.data == [prue, piper] and result.attempts == 1
    assert result.raw.count("Shannen Doherty") == 2  # stopped at the first repeat, not at the end of the reply
    assert any("repeated" in note for note in result.notes), result.notes


def test_an_item_that_names_nothing_new_is_a_repeat_even_if_a_number_counts_up(fake_model):
    # SmolLM2 on manga-books: "Manga Melech" 2012, 2013, 2014, ... until max_tokens
    books = [{"title": "Manga Messiah", "year": 2006}, {"title": "Manga Melech", "year": 2010}]
    counting = ", ".join(json.dumps({"title": "Manga Melech", "year": year}) for year in range(2011, 2041))
    reply = '{"items": [' + ", ".join(map(json.dumps, books)) + ", " + counting
    fake_model.enqueue(reply, reply)
    result = run_extraction(CASES["manga-books"].text, target("title:str, year:int", many=True), fake_model)
    assert result.data == books and result.raw.count("Manga Melech") == 2


def test_a_repeated_item_in_a_nested_list_closes_the_object(fake_model):
    case = CASES["brown-county"]  # reservations:list[str] is the last required field
    done = {k: v for k, v in case.expected.items() if k != "reservations"}
    first, second = case.expected["reservations"][:2]
    head = json.dumps(done)[:-1] + f', "reservations": ["{first}", "{second}", ' + ", ".join([f'"{first}"'] * 20)
    fake_model.enqueue(head, head)
    result = run_extraction(case.text, Target(case.schema), fake_model)
    assert result.data == done | {"reservations": [first, second]} and result.attempts == 1


def test_many_wraps_the_list_for_the_grammar_and_unwraps_the_answer(fake_model):
    text = CASES["charmed"].text
    fake_model.enqueue(
        '{"items": [{"character": "Prue", "actress": "Shannen Doherty"}, {"character": "Piper"}]}',
        '[{"character": "Prue", "actress": "Shannen Doherty"}, {"character": "Piper", "actress": "Holly Marie Combs"}]',
    )
    result = run_extraction(text, target("character:str, actress:str", many=True), fake_model)
    assert result.data[1] == {"character": "Piper", "actress": "Holly Marie Combs"}
    wire = fake_model.history[0][1].json_schema
    assert wire["type"] == "object" and wire["required"] == [MANY_KEY]
    assert wire["properties"][MANY_KEY]["items"]["required"] == ["character", "actress"]
    assert "`[1].actress`" in fake_model.history[1][0][-1].content  # the path is the user's, not the wrapper's


def test_empty_text_fails_before_any_generation(fake_model):
    with pytest.raises(Exception, match="the text is empty"):
        run_extraction(" \n ", target("name:str"), fake_model)
    assert fake_model.history == []


class Book(BaseModel):
    title: str
    year: int


class Series(BaseModel):
    title: str
    japanese_title: str | None = None
    books: list[Book]


def test_a_pydantic_class_gives_instances_and_its_defs_survive_wrapping(fake_model):
    text = CASES["manga-series"].text
    fake_model.enqueue(
        '{"title": "Manga Bible", "japanese_title": "新約聖書", "books": [{"title": "Manga Messiah", "year": 2006}]}'
    )
    series = extract(text, Series, model=fake_model)
    assert isinstance(series, Series) and series.books == [Book(title="Manga Messiah", year=2006)]
    assert series.japanese_title == "新約聖書"
    fake_model.enqueue('{"items": [{"title": "Manga Messiah", "year": 2006}, {"title": "Manga Melech", "year": 2010}]}')
    books = extract(text, Book, model=fake_model, many=True)
    assert books == [Book(title="Manga Messiah", year=2006), Book(title="Manga Melech", year=2010)]
    wire = fake_model.history[0][1].json_schema
    assert "$defs" in wire and wire["properties"]["books"]["items"] == {"$ref": "#/$defs/Book"}


def test_grammar_limits_are_detected_and_named():
    assert "Unsupported pattern" in (grammar_problem({"type": "string", "pattern": "^(?!a)b$"}) or "")
    assert grammar_problem(PERSON) is None
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}, "t": {"uniqueItems": True}}}
    assert unenforced(schema) == ["minimum", "uniqueItems"]
    assert unenforced({"type": "object", "properties": {"minimum": {"type": "integer"}}}) == []


def ctx_with(model) -> ToolContext:
    return ToolContext("Who founded Grennaskolan?", None, FetchPolicy(), lambda t: len(t.split()), model=model)


def test_extract_json_tool_returns_the_json_and_is_not_offered_to_the_qa_loop(fake_model):
    assert "extract_json" not in default_tools() and "extract_json" in all_tools()
    tool = all_tools()["extract_json"]
    assert tool.spec()["function"]["parameters"]["required"] == ["text", "schema"]
    fake_model.enqueue('{"founder": "Stockholm University", "founded": 1963}')
    passages = tool(ctx_with(fake_model), {"text": GRENNA, "schema": "founder:str, founded:int"}).passages
    assert json.loads(passages[0].text) == {"founder": "Stockholm University", "founded": 1963}
    assert passages[0].id.startswith("extract_json:")


def test_extract_json_tool_failures_are_observations(fake_model):
    tool = all_tools()["extract_json"]
    with pytest.raises(ToolRetry, match="not available"):
        tool(ctx_with(None), {"text": GRENNA, "schema": "name:str"})
    with pytest.raises(ToolRetry, match="invalid JSON Schema"):
        tool(ctx_with(fake_model), {"text": GRENNA, "schema": {"type": "int"}})
    fake_model.enqueue('{"founded": "1963"}', '{"founded": "in 1963"}')
    with pytest.raises(ToolRetry, match=r"extract_json failed: .*`founded`"):
        tool(ctx_with(fake_model), {"text": GRENNA, "schema": "founded:int"})
    with pytest.raises(ToolRetry, match="bad arguments"):
        tool(ctx_with(fake_model), {"text": GRENNA})


def test_extract_json_tool_output_is_capped_with_a_marker(fake_model):
    names = [f"person{i}" for i in range(400)]  # one piece: no spaces
    fake_model.enqueue(json.dumps({"items": [{"name": n} for n in names]}, separators=(",", ":")))
    arguments = {"text": GRENNA, "schema": "name:str", "many": True}
    passages = all_tools()["extract_json"](ctx_with(fake_model), arguments).passages
    assert len(passages[0].text) < 4100 and passages[0].text.endswith("more characters]")
    assert "[truncated: " in passages[0].text


def test_scoring_compares_leaves_as_multisets_after_light_normalization():
    assert normalize("  Jönköping   County. ") == "jönköping county" and normalize(40.0) == normalize(40) == "40"
    assert normalize("Shawty What You Doin’") == normalize("shawty what you doin'") and normalize(None) is None
    assert normalize(False) == "false" and normalize(2.5) == "2.5"
    assert leaves({"a": [{"b": 1}, {"b": 2}], "c": None}) == {("a[].b", "1"): 1, ("a[].b", "2"): 1}
    case = ExtractionCase("t", "text", {"type": "array"}, [{"n": "Ann", "r": ["x", "y"]}, {"n": "Bo", "r": ["x"]}])
    task = ExtractionTask("t", [case])
    assert task.evaluate(case, [{"n": "bo", "r": ["x"]}, {"n": "ANN", "r": ["y", "x"]}]) == (5, 5, 5)
    assert task.evaluate(case, [{"n": "Ann", "r": ["x", "x", "z"]}]) == (3, 4, 5)
    assert task.evaluate(case, None) == (0, 0, 5)


def test_the_labelled_set_loads_and_its_gold_validates():
    task = load_cases()
    assert task.problems == [] and 24 <= len(task) <= 30
    assert sum(c.many for c in task) >= 2 and {c.lang for c in task} >= {"en", "ru", "zh", "el", "de", "es"}
    for case in task:
        jsonschema.validate(case.expected, case.schema if not case.many else {"type": "array", "items": case.schema})
    assert any("enum" in json.dumps(c.schema) for c in task) and any(c.source.startswith("xquad") for c in task)


def test_run_eval_scores_valid_and_invalid_cases(fake_model):
    task = ExtractionTask("t", [CASES["gordon"], CASES["charmed"]])
    fake_model.enqueue(json.dumps(CASES["gordon"].expected), "no idea", "still no idea")
    rows = run_eval(task, fake_model, constrain=True)
    first, second = rows.rows
    assert first.valid and first.first_try and first.matched == first.gold == 7
    assert not second.valid and second.predicted == 0 and second.raw == "still no idea" and second.gold == 8
    summary = rows.summary("fake")
    assert summary["valid"] == 0.5 and summary["precision"] == 1.0 and summary["recall"] == 7 / 15
    assert "| fake | constrained | 2 | 50% | 50% | 1.00 | 0.47 |" in markdown([summary])


# The real bundled model: SmolLM2-135M under llama.cpp grammars.


@pytest.fixture(scope="module")
def smollm2():
    from assistant.models.llama_cpp import LlamaCppBackend
    from assistant.models.presets import get_preset, local_path

    preset = get_preset("smollm2-135m")
    assert preset is not None
    backend = LlamaCppBackend(local_path(preset) or "", n_ctx=2048, threads=2, name="smollm2-135m")
    yield backend
    backend.close()


@pytest.mark.slow
def test_real_model_grammar_output_validates_nested_objects_arrays_enums_optional_fields(smollm2):
    case = CASES["armed-forces-day"]  # Polish text; a nested date with a month enum; 4 optional fields
    result = run_extraction(case.text, Target(case.schema), smollm2)
    jsonschema.validate(result.data, case.schema)
    assert result.constrained and result.notes == [] and result.attempts == 1
    assert set(result.data) >= {"name", "country", "date"}  # the required ones, whatever else it added
    assert result.data["date"]["month"] in case.schema["properties"]["date"]["properties"]["month"]["enum"]
    schema = parse_fields("name:str, role:{financier|inventor|founder}")
    people = run_extraction(CASES["tesla-es"].text, Target(schema, many=True), smollm2, max_tokens=120)
    jsonschema.validate(people.data, {"type": "array", "items": schema})
    assert len(people.data) >= 2 and {p["role"] for p in people.data} <= {"financier", "inventor", "founder"}
    charmed = Target(parse_fields("character:str, actress:str?"), True)  # SmolLM2 repeats an item of this list
    looped = run_extraction(CASES["charmed"].text, charmed, smollm2)
    jsonschema.validate(looped.data, charmed.answer_schema)
    assert looped.notes == ["the model repeated a list item: the list was closed before the repeat"]
    assert len({json.dumps(item, sort_keys=True) for item in looped.data}) == len(looped.data) >= 1


@pytest.mark.slow
def test_real_model_constrained_vs_unconstrained_and_an_inexpressible_schema(smollm2):
    text, schema = CASES["brown-county"].text, parse_fields("name:str, state:str, population:int")
    constrained = run_extraction(text, Target(schema), smollm2)
    jsonschema.validate(constrained.data, schema)
    try:  # free decoding: valid JSON, or a clear error that keeps what the model wrote
        free = run_extraction(text, Target(schema), smollm2, constrain=False, max_tokens=64)
        jsonschema.validate(free.data, schema)
    except ExtractionError as e:
        assert e.raw.strip() and e.field and e.attempts == 2
    lookahead = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(?!X)[A-Z]+$"}}}
    with pytest.raises(SchemaError, match=r"cannot turn this schema into a grammar .*--no-constrain"):
        run_extraction(text, Target(lookahead), smollm2)
