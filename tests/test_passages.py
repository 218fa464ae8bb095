"""Splitting text into passages, BM25 ranking and picking passages within a token budget."""

from __future__ import annotations

from assistant.passages import (
    PASSAGE_WORDS,
    WHOLE_PASSAGE_WORDS,
    approx_tokens,
    cap_tokens,
    cap_words,
    document_passages,
    rank_passages,
    select_within_budget,
    split_passages,
    tokenize,
    word_count,
)


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def test_short_paragraphs_are_packed_together():
    text = "First paragraph here.\n\nSecond paragraph here.\n\nThird one."
    assert split_passages(text, max_words=100) == ["First paragraph here.\nSecond paragraph here.\nThird one."]


def test_paragraphs_start_a_new_passage_when_the_limit_would_be_exceeded():
    first, second = words(60, "alpha") + ".", words(60, "beta") + "."
    assert split_passages(f"{first}\n\n{second}", max_words=100) == [first, second]


def test_long_paragraph_splits_on_sentences_never_mid_sentence():
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(30)]
    passages = split_passages(" ".join(sentences), max_words=50)
    assert len(passages) > 1
    assert all(len(p.split()) <= 50 for p in passages)
    assert all(p.endswith("words.") for p in passages)
    assert " ".join(passages) == " ".join(sentences)  # nothing lost, order kept


def test_sentence_longer_than_the_limit_is_cut():
    passages = split_passages(words(250) + ".", max_words=100)
    assert [len(p.split()) for p in passages] == [100, 100, 50]


def test_sentence_split_keeps_closing_quotes():
    passages = split_passages('He said "stop." Then he left. ' + words(10), max_words=4)
    assert passages[0] == 'He said "stop."'


def test_blank_text_gives_no_passages():
    assert split_passages("  \n\n \n") == []


def test_tokenize_handles_non_ascii_letters():
    assert tokenize("Café in Zürich, Straße; São Paulo!") == [
        "café",
        "in",
        "zürich",
        "strasse",
        "são",
        "paulo",
    ]
    assert tokenize("東京タワー") == ["東", "京", "タ", "ワ", "ー"]


def test_passage_with_the_query_terms_ranks_first():
    passages = [
        "The weather in Amsterdam is often rainy and the canals are busy with boats.",
        "Rembrandt painted The Night Watch in 1642; it hangs in the Rijksmuseum.",
        "The museum shop sells postcards and the cafe is on the ground floor of the building.",
    ]
    ranked = rank_passages("who painted the night watch", passages)
    assert ranked[0][1] == 1
    assert ranked[0][0] > ranked[1][0]
    assert sorted(i for _, i in ranked) == [0, 1, 2]


def test_stop_words_do_not_decide_the_ranking():
    passages = ["the the the the of of and and the of", "glacier retreat measured in the alps"]
    assert rank_passages("what is the glacier retreat", passages)[0][1] == 1
    assert rank_passages("what is the glacier retreat", passages)[1][0] == 0.0


def test_ranking_matches_non_ascii_terms():
    passages = ["Der Zug fährt nach Berlin.", "Die Brücke über den Fluss ist alt.", "München liegt im Süden."]
    assert rank_passages("brücke über", passages)[0][1] == 1
    assert rank_passages("MÜNCHEN", passages)[0][1] == 2


def test_stop_word_only_query_still_ranks():
    ranked = rank_passages("the who", ["nothing here", "the who played live"])
    assert ranked[0][1] == 1
    assert ranked[0][0] > 0


def test_ranking_empty_inputs():
    assert rank_passages("anything", []) == []
    assert rank_passages("", ["a passage"]) == [(0.0, 0)]


def test_approx_tokens_counts_words_and_punctuation():
    assert approx_tokens("") == 0
    assert approx_tokens("one two three four five six seven eight nine ten") == 13
    assert approx_tokens("Hello, world!") == 5  # 2 words * 1.3 = 2.6, plus 2 marks -> ceil(4.6)


def test_select_within_budget_keeps_order_and_skips_what_does_not_fit():
    items = ["a" * 5, "b" * 50, "c" * 10, "d" * 30]
    chosen = select_within_budget(items, budget_tokens=45, count_tokens=len)
    assert chosen == ["a" * 5, "c" * 10, "d" * 30]
    assert select_within_budget(items, budget_tokens=4, count_tokens=len) == []


def test_select_within_budget_with_default_estimate_and_key():
    results = [("best", words(50)), ("second", words(50)), ("third", words(10))]
    chosen = select_within_budget(results, budget_tokens=80, key=lambda r: r[1])
    assert [name for name, _ in chosen] == ["best", "third"]  # 65 + 13 tokens; the second would overflow


def test_a_passage_sized_document_is_kept_exactly_and_a_longer_one_is_split():
    short = "Cloves   came to Zanzibar.\n" + words(WHOLE_PASSAGE_WORDS - 4)
    assert document_passages(short) == [short]
    long = words(WHOLE_PASSAGE_WORDS + 1) + "."
    assert document_passages(long) == split_passages(long) and len(document_passages(long)) == 2


def test_cap_words_cuts_with_a_visible_marker_and_keeps_the_text_before_the_cut():
    text = "one two\nthree   four five"
    assert cap_words(text, 5) == text
    assert cap_words(text, 3) == "one two\nthree … [truncated: 2 more words]"


def test_cap_tokens_fits_the_budget_marker_included():
    count = lambda t: len(t.split())  # noqa: E731
    text = words(1000)
    # as many words as fit beside the five-token marker, not fewer
    assert cap_tokens(text, 50, count) == words(45) + " … [truncated: 955 more words]"
    assert cap_tokens(text, 3, count) == "… [truncated: 1000 more words]", "nothing fits: only the marker"
    assert cap_tokens("short text", 50, count) == "short text"
    assert approx_tokens(cap_tokens(words(500), 100)) <= 100


# A Chinese text has no spaces: a text that `split()` sees as one word must still be split and capped.
CHINESE = (
    "黑豹队的防守在整个赛季只丢了308分，在联盟中排名第六，同时也以24次拦截领先国家橄榄球联盟，并且四次入选职业碗。"
)


def test_a_text_without_spaces_is_split_into_passages_that_lose_and_add_nothing():
    text = CHINESE * 10
    passages = split_passages(text)
    assert len(passages) > 1 and all(word_count(p) <= PASSAGE_WORDS for p in passages)
    assert "".join(passages) == text, "no character lost, no space added between Chinese sentences"
    assert word_count("首都是北京 Beijing") == 2.5 + 1, "a Han character is half a word"
    punctuated, bare = "「首都」是北京。 Beijing, China.", "首都是北京 Beijing China"
    assert word_count(punctuated) == word_count(bare), "punctuation is no word of its own"
    assert document_passages(CHINESE * 4) == [CHINESE * 4], "paragraph-sized (about 225 characters) stays whole"


def test_a_text_without_spaces_is_capped_to_what_fits_not_to_nothing():
    capped = cap_tokens(CHINESE * 5, 50)
    assert capped.startswith(CHINESE[:20]) and approx_tokens(capped) <= 50, capped
    assert cap_words(CHINESE * 8, 100).startswith(CHINESE * 3)
