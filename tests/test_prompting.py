"""Parsing replies into short answer, explanation and citations."""

from assistant.models.toolcalls import parse_tool_calls
from assistant.prompting import parse_answer


def test_two_line_reply():
    p = parse_answer("Answer: Rembrandt van Rijn [1]\nExplanation: He painted it in 1642 [1][2].", {1, 2})
    assert p.short_answer == "Rembrandt van Rijn"
    assert p.answer == "Rembrandt van Rijn [1]\nHe painted it in 1642 [1][2]."
    assert p.cited == [1, 2] and p.dropped == []


def test_free_text_reply_takes_the_first_sentence():
    p = parse_answer("The painter was Rembrandt [2]. He lived in Amsterdam.", {1, 2})
    assert p.short_answer == "The painter was Rembrandt"
    assert p.cited == [2]


def test_grouped_and_unknown_citations():
    p = parse_answer("Answer: Paris [1, 4]", {1, 2})
    assert p.answer == "Paris [1]" and p.cited == [1] and p.dropped == [4]


def test_markdown_bold_labels():
    assert parse_answer("**Answer:** Mercury [3]", {3}).short_answer == "Mercury"


def test_tool_call_shapes():
    names = ["web_search"]
    for text in [
        '{"name": "web_search", "arguments": {"query": "x"}}',
        "```json\n{'name': 'web_search', 'arguments': {'query': 'x'}}\n```",
        '<tool_call>\n{"name": "web_search", "arguments": "{\\"query\\": \\"x\\"}"}\n</tool_call>',
        '[{"function": {"name": "web_search", "arguments": {"query": "x"}}}]',
    ]:
        calls, error = parse_tool_calls(text, names)
        assert error is None and calls[0].arguments == {"query": "x"}, text
    assert parse_tool_calls("{not json", names)[1].startswith("could not parse")
    assert parse_tool_calls('{"name": "web_search", "arguments": [1]}', names)[1].endswith("a JSON object")


def test_sentences_that_restate_the_question_are_trimmed_to_the_answer():
    cases = [
        ("What is the capital of Colombia?", "The capital of Colombia is Bogotá.", "Bogotá"),
        (
            "Who had a top 40 hit UK single in 1966 with Mustang Sally?",
            "Wilson Pickett had a top 40 hit UK single in 1966 with Mustang Sally.",
            "Wilson Pickett",
        ),
        ("Who painted The Night Watch?", "The answer is: Rembrandt van Rijn", "Rembrandt van Rijn"),
        ("Which river flows through Paris, the Seine or the Loire?", "Answer: the Seine", "the Seine"),
        ("Who painted The Night Watch?", "Answer: Rembrandt [1]", "Rembrandt"),
    ]
    for question, reply, short in cases:
        assert parse_answer(reply, {1}, question).short_answer == short, reply
