"""Passages: split page text into ~100-word chunks, rank them against a query with BM25, fit them to a budget.

The loop reads a page, keeps only the passages that answer the question, and stops before the context is full:

    from assistant.passages import rank_passages, select_within_budget, split_passages
    passages = split_passages(page.text)
    ranked = [passages[i] for score, i in rank_passages("when was the tower built", passages) if score > 0]
    chosen = select_within_budget(ranked, budget_tokens=800)

A local index stores documents the same way (`document_passages`), and no one source may cost more than its
share of the prompt (`cap_words`, `cap_tokens`: the cut is marked, never silent).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# Kana and Han ideographs: these scripts put no spaces between words, so each character is a token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[^\W{_CJK}]+|[{_CJK}]")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_HANGUL_END = re.compile("[\uac00-\ud7af]$")
_PUNCT = re.compile(r"[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+|(?<=[。！？])")
_PARAGRAPH = re.compile(r"\n\s*")

# A short English stop list (the classic Lucene/SMART core); enough to keep "the" and "of" from ranking pages.
_STOP = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t don"""
STOP_WORDS = frozenset(_STOP.split())

PASSAGE_WORDS = 100  # the size split_passages aims at
# A text up to this long is one passage already and is kept as it came; the TriviaQA and Wikipedia passage
# files the evaluations index are 31-103 words a record, so chunking leaves their ids and texts unchanged.
WHOLE_PASSAGE_WORDS = 150
# Words as passages are sized and cut: a run of characters without a space, but each kana or Han character on its
# own, as half a word (Chinese takes about twice as many characters as English takes words: XQuAD's paragraphs,
# median 225 characters in zh against 110 words in en), so a text without spaces is split and capped like any other.
# Punctuation goes with the character it touches ("京，", "「北"), as it goes with an English word ("Beijing,").
_WORD = re.compile(rf"[^\w\s{_CJK}]*[{_CJK}][^\w\s{_CJK}]*|[^\s{_CJK}]+")
CJK_WORD = 0.5


def words_in(text: str) -> Iterator[re.Match[str]]:
    """The tokens of `text` as written, with their places: runs of letters and digits, each Han or kana character
    one (as `tokenize`, without its case and compatibility folding)."""
    return _TOKEN.finditer(text)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters and digits; one token per CJK character)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def same_text(text: str) -> str:
    """What passages are compared by: `text` with each run of white space one space. A paragraph indexed twice
    (TyDi QA repeats one under a new id for each question) or found again by another search is one passage."""
    return " ".join(text.split())


def cjk_character(token: str) -> bool:
    """Whether `token` is one kana or Han character: a token of its own (`tokenize`), a word's part, not a word."""
    return len(token) == 1 and bool(_CJK_CHAR.match(token))


def space_cjk(text: str) -> str:
    """`text` with every kana and Han character a word of its own, as `tokenize` reads them: "首都是北京" →
    "首 都 是 北 京", so that phrases of them match on word boundaries like any other."""
    return " ".join(_CJK_CHAR.sub(lambda m: f" {m.group()} ", text).split())


def holds_phrase(text: str, phrase: str) -> bool:
    """Whether `text` holds `phrase` as whole words, both as single-spaced words (kana and Han characters each a
    word: `space_cjk`); a phrase ending in Hangul may go on into a particle: "수메르어" is in "수메르어는"
    (Sumerian + the topic particle), as Korean attaches particles to the word."""
    return f" {phrase}" + ("" if _HANGUL_END.search(phrase) else " ") in f" {text} "


def word_count(text: str) -> float:
    """How many words `text` holds as passages count them: a kana or Han character is half a word."""
    return sum(map(_words_of, _WORD.findall(text)))


def _words_of(unit: str) -> float:
    """What one `_WORD` unit counts for: half a word for a kana or Han character (with its punctuation), else one."""
    return CJK_WORD if _CJK_CHAR.search(unit) else 1.0


def split_passages(text: str, max_words: int = PASSAGE_WORDS) -> list[str]:
    """Split text into passages of at most ~max_words words, on paragraph then sentence boundaries."""
    chunks: list[str] = []
    pending: list[str] = []  # short paragraphs packed together, joined by newlines
    pending_words = 0.0
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        words = word_count(paragraph)
        if not words:
            continue
        if pending and pending_words + words > max_words:
            chunks.append("\n".join(pending))
            pending, pending_words = [], 0
        if words <= max_words:
            pending.append(paragraph)
            pending_words += words
        else:
            chunks.extend(_pack_sentences(paragraph, max_words))
    if pending:
        chunks.append("\n".join(pending))
    return chunks


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """The sentences of `text`, whitespace collapsed; a piece under `min_words` words ("St.", "Jr. He") joins the
    sentence before it, so an abbreviation's period rarely leaves a fragment on its own."""
    sentences: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        for piece in _SENTENCE_END.split(" ".join(paragraph.split())):
            if not piece:
                continue
            if sentences and (word_count(piece) < min_words or word_count(sentences[-1]) < min_words):
                sentences[-1] = f"{sentences[-1]} {piece}"
            else:
                sentences.append(piece)
    return sentences


def document_passages(text: str) -> list[str]:
    """A document as passages: itself, unchanged, if it is passage-sized; else `split_passages` of it."""
    return [text] if word_count(text) <= WHOLE_PASSAGE_WORDS else split_passages(text)


def _pack_sentences(paragraph: str, max_words: int) -> list[str]:
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        # Only a sentence longer than the limit on its own is cut mid-sentence.
        while word_count(sentence) > max_words:
            end = [m.end() for m in _WORD.finditer(sentence)][_units_within(sentence, max_words) - 1]
            pieces.append(sentence[:end])
            sentence = sentence[end:].lstrip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    current: list[str] = []
    count = 0.0
    for piece in pieces:
        n = word_count(piece)
        if current and count + n > max_words:
            chunks.append(_join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        chunks.append(_join(current))
    return chunks


def _join(sentences: list[str]) -> str:
    """Sentences as one text again: a space after western punctuation, none after "。", "！" or "？"."""
    text = sentences[0]
    for sentence in sentences[1:]:
        text += ("" if text.endswith(("。", "！", "？")) else " ") + sentence
    return text


def _units_within(text: str, max_words: float) -> int:
    """How many of `text`'s leading units (`_WORD`: a kana or Han character each) fit in `max_words`; at least 1."""
    total, units = 0.0, 0
    for w in _WORD.findall(text):
        total += _words_of(w)
        if total > max_words:
            break
        units += 1
    return max(units, 1)


def rank_passages(query: str, passages: list[str], k1: float = 1.5, b: float = 0.75) -> list[tuple[float, int]]:
    """Score every passage against the query with BM25; (score, index) pairs, best first."""
    docs = [[t for t in tokenize(p) if t not in STOP_WORDS] for p in passages]
    terms = {t for t in tokenize(query) if t not in STOP_WORDS}
    if not terms:  # a query of stop words only ("the who") still deserves an answer
        docs = [tokenize(p) for p in passages]
        terms = set(tokenize(query))
    n = len(docs)
    avg_len = sum(map(len, docs)) / n if n else 0.0
    df = Counter(t for doc in docs for t in set(doc) if t in terms)
    # Lucene's idf: never negative, so a term found in most passages still counts a little.
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
    scored = []
    for index, doc in enumerate(docs):
        tf = Counter(doc)
        norm = k1 * (1 - b + b * len(doc) / avg_len) if avg_len else k1
        score = sum(idf[t] * tf[t] * (k1 + 1) / (tf[t] + norm) for t in terms if tf[t])
        scored.append((score, index))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return scored


def approx_tokens(text: str) -> int:
    """Rough token count without a tokenizer: 1.3 per word plus one per punctuation mark."""
    return math.ceil(round(len(_TOKEN.findall(text)) * 1.3, 6) + len(_PUNCT.findall(text)))


def cap_words(text: str, max_words: int = WHOLE_PASSAGE_WORDS) -> str:
    """`text` cut after `max_words` words, ending in a marker that says how much was left out."""
    return _cut(text, _units_within(text, max_words)) if word_count(text) > max_words else text


def cap_tokens(text: str, max_tokens: int, count_tokens: Callable[[str], int] = approx_tokens) -> str:
    """`text` cut after as many words as fit `max_tokens` (marker included, counted by `count_tokens`)."""
    if count_tokens(text) <= max_tokens:
        return text
    # `_cut` counts words as `_WORD` finds them; one costs a token or more, a kana or Han character half a token or more
    low, high = 0, min(len(_WORD.findall(text)) - 1, 2 * max(max_tokens, 0))
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(_cut(text, mid)) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return _cut(text, low)


def _cut(text: str, words: int) -> str:
    spans = [m.end() for m in _WORD.finditer(text)]
    kept = text[: spans[words - 1]] if words else ""
    return f"{kept} … [truncated: {len(spans) - words} more words]".lstrip()


def select_within_budget(
    items: Sequence[T],
    budget_tokens: int,
    count_tokens: Callable[[str], int] = approx_tokens,
    key: Callable[[T], str] = str,
) -> list[T]:
    """Take items best-first (in the given order) while their tokens fit the budget; skip any that do not."""
    chosen: list[T] = []
    left = budget_tokens
    for item in items:
        cost = count_tokens(key(item))
        if cost <= left:
            chosen.append(item)
            left -= cost
    return chosen
