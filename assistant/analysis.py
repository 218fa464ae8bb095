"""Text analysis for the local index: the terms a passage is indexed under and a query is searched with, per
script and language, so that "столицей" finds "столица", "언어는" finds "언어" and "首都" is found inside
"中国的首都是北京".

    python -m assistant.analysis ru "Какой город является столицей Колумбии?"   # the terms, one a line

FTS5's unicode61 tokenizer cuts words at spaces and punctuation, which fails two kinds of text (measured on XQuAD
and TyDi QA, docs/results.md "Non-English retrieval"):

- Scripts written without spaces (Han, kana, Thai) come out as one token a sentence, and Korean words carry their
  particles (언어 "language", 언어는 "language" + topic particle). Runs of these scripts are cut into overlapping
  character n-grams: bigrams for Han, kana and Hangul (two characters are a whole word in most short Chinese and
  Korean words), trigrams for Thai, whose vowels and tone marks are characters of their own.
- Inflecting languages write one word many ways. A passage in a language of `assistant.languages` with a
  `stemmer` is indexed under the Snowball stems of its words (PyStemmer), chosen where stems measurably raised
  the gold passage's rank.

Every other word is indexed as it is (casefolded, NFKC), so English passages are indexed under their words as
before. Words keep their combining marks (Devanagari's vowel signs are marks: Python's `\\w` stops at them).
A passage's language is detected once, when it is indexed (py3langid over all its languages); the index records
which stemmers it used, and a query is searched under each of those stems of its words, plus the words as they are
when some passages were not stemmed: the query needs no language of its own, and a short one is not misdetected.
Changing what `index_terms` returns for a text is a change of the index's layout: old indexes must be rebuilt or
migrated (assistant/search/index_file.py, `SCHEMA_VERSION`).
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from assistant.errors import AssistantError
from assistant.languages import stemmer_of

# Scripts written without spaces between words, each with the n-gram length its runs are cut into.
_BIGRAM = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_TRIGRAM = "\u0e00-\u0e7f"  # Thai
_NOSPACE = _BIGRAM + _TRIGRAM
_THAI = re.compile(f"[{_TRIGRAM}]")
_NO_SPACE_START = re.compile(f"[{_NOSPACE}]")
# A passage detected below this is indexed under its words as they are. Its first characters are enough to tell
# its language and take half the time of the whole (1.5 ms against 3.3 a passage on XQuAD ru, on a busy machine).
DETECT_THRESHOLD = 0.5
DETECT_CHARS = 300


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    """Runs of a no-space script, or words: letters, digits and combining marks (about 50 ms, once a process)."""
    marks = "".join(
        chr(c)
        for c in range(0x300, 0x10000)
        if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me") and not 0x0E00 <= c <= 0x0E7F
    )
    return re.compile(rf"[{_NOSPACE}]+|(?:[^\W{_NOSPACE}]|[{re.escape(marks)}])+")


def words(text: str) -> list[str]:
    """The words of `text`, casefolded, NFKC; a run of a no-space script is one item."""
    return _word_pattern().findall(unicodedata.normalize("NFKC", text).casefold())


def ngrams(run: str) -> list[str]:
    """A run of a no-space script as overlapping n-grams (a run shorter than n: itself)."""
    n = 3 if _THAI.match(run) else 2
    return [run] if len(run) <= n else [run[i : i + n] for i in range(len(run) - n + 1)]


def _no_space(word: str) -> bool:
    """Whether an item of `words` is a run of a no-space script (they never mix with other letters)."""
    return bool(_NO_SPACE_START.match(word))


@functools.cache
def _stemmer(algorithm: str) -> Any:
    try:
        import Stemmer
    except ImportError:
        raise AssistantError("the local index needs PyStemmer — pip install PyStemmer") from None
    return Stemmer.Stemmer(algorithm, 100_000)  # the stemmer's own cache of recent words


def stem_function(stemmer: str | None) -> Callable[[str], str]:
    """The stemmer's one-word function (None: each word as it is)."""
    return _stemmer(stemmer).stemWord if stemmer else str


def index_terms(text: str, stemmer: str | None) -> list[str]:
    """The terms a text is indexed under: n-grams of no-space runs, else each word stemmed by `stemmer`
    (a Snowball algorithm name) or as it is."""
    stem = _stemmer(stemmer).stemWord if stemmer else None
    terms: list[str] = []
    for word in words(text):
        if _no_space(word):
            terms += ngrams(word)
        else:
            terms.append(stem(word) if stem else word)
    return terms


def index_text(text: str, stemmer: str | None) -> str:
    """`index_terms` as the text FTS5 stores (terms joined by spaces)."""
    return " ".join(index_terms(text, stemmer))


def query_terms(query: str, stemmers: Iterable[str | None], stop_words: frozenset[str] = frozenset()) -> list[str]:
    """The terms a query is searched under in an index whose passages were stemmed by `stemmers` (None: left as
    they are): each word once per distinct form, in order; words in `stop_words` dropped unless nothing is left."""
    kept = [w for w in dict.fromkeys(words(query)) if w not in stop_words] or list(dict.fromkeys(words(query)))
    algorithms = list(dict.fromkeys(stemmers))
    terms: list[str] = []
    for word in kept:
        if _no_space(word):
            terms += ngrams(word)
        else:
            terms += [_stemmer(a).stemWord(word) if a else word for a in algorithms]
    return list(dict.fromkeys(terms))


@functools.cache
def identifier() -> Any:
    """py3langid over every language it knows (its 4.5 MB model, read once a process, about 1 s): the one copy that
    indexing and routing (assistant/routing.py, which restricts copies of it to its routes) share."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise AssistantError("telling a text's language needs py3langid — pip install py3langid") from None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def passage_language(text: str) -> str:
    """The language of a passage, among all py3langid knows ("" when it is unsure or the text has no letters)."""
    if not any(c.isalpha() for c in text):
        return ""
    lang, confidence = identifier().classify(text[:DETECT_CHARS])
    return str(lang) if confidence >= DETECT_THRESHOLD else ""


def passage_stemmer(text: str) -> tuple[str, str | None]:
    """(language, stemmer) of a passage: its detected language and the stemmer the index uses for it."""
    lang = passage_language(text)
    return lang, stemmer_of(lang)


if __name__ == "__main__":  # pragma: no cover
    code, *rest = sys.argv[1:] or ["en", ""]
    print("\n".join(index_terms(" ".join(rest), stemmer_of(code))))
