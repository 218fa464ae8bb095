"""A short answer in its source's own form: "Bogota" → "Bogotá" when a shown source writes "Bogotá".

Small models drop accents, change case and punctuation when they copy a name. When the answer's words are, word
for word, a run of a source's words up to case, accents (compatibility forms too) and punctuation between
words (each Han or kana character a word), the answer becomes that run as the source writes it. Nothing else
counts: a transliteration ("moskva" for "Москва") or a translation is not the same words, and an answer found
nowhere stays as the model wrote it; nor are capitals the source lacks taken away ("The Humber" stays, though
the source says "the Humber").

A number from 2 to 10 written in digits takes the word its sources write when they never write the digits
("4" → "cuatro", "четырьмя"), or when the sentence that answers the question writes the word and the digits stand
elsewhere ("4:51 left"): the same value in the source's form, as extractive answers are scored.

    python -m assistant.spans "bogota" "Bogotá, officially Bogotá, Distrito Capital"    # prints Bogotá
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence

from assistant.passages import cjk_character, split_sentences, tokenize, words_in


def _fold(word: str) -> str:
    """A word without case or accents: "Bogotá", "BOGOTA" and "bogota" fold alike; "Москва" stays Cyrillic."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def source_form(answer: str, texts: Sequence[str]) -> str:
    """`answer` as the first of `texts` that holds its words writes them, else `answer` unchanged. The source's
    words must follow one another with at most 3 characters between them on one line ("St. Petersburg",
    "Jean-Paul"), and only the words are replaced: an answer's own characters around them ("Bogota!") stay."""
    mine = list(words_in(answer))
    words = [_fold(m.group()) for m in mine]
    if not words:
        return answer
    for text in texts:
        found = list(words_in(text))
        folded = [_fold(m.group()) for m in found]
        for i in range(len(found) - len(words) + 1):
            run = found[i : i + len(words)]
            if folded[i : i + len(words)] == words and all(
                _joins(text[a.end() : b.start()]) for a, b in zip(run, run[1:], strict=False)
            ):
                theirs, ours = text[run[0].start() : run[-1].end()], answer[mine[0].start() : mine[-1].end()]
                if _capitalized(ours, theirs):
                    return answer
                return answer[: mine[0].start()] + theirs + answer[mine[-1].end() :]
    return answer


def number_form(answer: str, texts: Sequence[str], numbers: Sequence[frozenset[str]], question: str = "") -> str:
    """A number from 2 to 10 that the model wrote in digits, as the first of `texts` that writes it in words does
    ("4" → "cuatro"), when none of them holds the digits; `numbers`: the forms of 2, 3, … 10 in the question's
    language (assistant/languages.py). When they hold both, the sentence that answers `question` decides: the one
    of them writing the number that shares the most words with it (`_evidence`). A measure word after the digits
    stays ("4次" → "四次"), and a source that writes the number before that word is preferred ("两次" over "二").
    A Han numeral counts only standing alone: not the 四 of 十四, 四十 or 第四. Anything else stays as it is."""
    number = _DIGITS_THEN_WORD.fullmatch(answer.strip())
    if not number or not 2 <= int(number["digits"]) < 2 + len(numbers):
        return answer
    forms = {_fold(form) for form in numbers[int(number["digits"]) - 2]}
    tail = number["word"] or ""
    if tail and not _measure_word(tail):
        return answer
    digits = re.compile(rf"(?<!\d){int(number['digits'])}(?!\d)")
    if any(digits.search(text) for text in texts):  # "5km" writes the digits too
        evidence = _evidence(question, texts, digits, forms)
        if evidence is None:
            return answer
        texts = [evidence]
    found = [(text, m) for text in texts for m in words_in(text)]
    words = [(text, m) for text, m in found if _fold(m.group()) in forms and not _in_han_number(text, m)]
    before_tail = [(text, m) for text, m in words if _fold(text[m.end() :].lstrip()).startswith(_fold(tail.strip()))]
    best = (before_tail if tail else []) or words
    return best[0][1].group() + tail if best else answer


def _evidence(question: str, texts: Sequence[str], digits: re.Pattern[str], forms: set[str]) -> str | None:
    """Of the sentences of `texts` that write the number, in `digits` or in one of its word `forms`, the one that
    shares the most words with `question`, when it writes the number in words alone and each sentence with the
    digits shares fewer ("Davis compiled 5½ sacks, four forced fumbles…" for "How many forced fumbles did Thomas
    Davis have?", though another source has "With 4:51 left"); else None. Words of four or more letters count,
    and each Han or kana character: not glue words ("the", "der") nor the number itself."""
    asked = {t for t in tokenize(question) if (len(t) >= 4 or cjk_character(t)) and not t.isdigit()}
    in_words, best_words, best_digits = None, 0, 0
    for text in texts:
        for sentence in split_sentences(text, min_words=1):
            shared = len(asked & set(tokenize(sentence)))
            if digits.search(sentence):
                best_digits = max(best_digits, shared)
            elif shared > best_words and any(
                _fold(m.group()) in forms and not _in_han_number(sentence, m) for m in words_in(sentence)
            ):
                in_words, best_words = sentence, shared
    return in_words if best_words > best_digits else None


# digits, then at most one word: a measure word ("4次", "4 veces"); "4 of them" is not a number, and a word
# glued to the digits is one only in a script without spaces, a capitalised one never ("4 April")
_DIGITS_THEN_WORD = re.compile(r"(?P<digits>\d+)(?P<word>\s?[^\W\d_]+)?")
_HAN_NUMERALS = frozenset("零〇一二两三四五六七八九十百千万亿")


def _measure_word(tail: str) -> bool:
    """Whether the word after an answer's digits counts what they number: a word after a space that does not
    start with a capital ("4 veces", "4 سنوات") or Han or kana glued to them ("4次"); not a suffix or a name
    ("2nd", "5km", "5½", "4 April"). A German noun is capitalised ("4 Kinder"), so it keeps its digits."""
    spaced = tail[0].isspace() and tail.strip().isalpha() and not tail.strip()[0].isupper()
    return spaced or all(map(cjk_character, tail))


def _in_han_number(text: str, word: re.Match[str]) -> bool:
    """Whether a one-character Han numeral is part of a larger number or an ordinal: 十四, 四十, 第四."""
    if len(word.group()) != 1 or word.group() not in _HAN_NUMERALS:
        return False
    before, after = text[word.start() - 1 : word.start()], text[word.end() : word.end() + 1]
    return bool(before) and (before in _HAN_NUMERALS or before == "第") or bool(after) and after in _HAN_NUMERALS


def _capitalized(ours: str, theirs: str) -> bool:
    """Whether the answer differs from the source only by capitals the source lacks ("The Humber" for "the
    Humber" mid-sentence): the answer's own capitals are kept."""
    return ours.casefold() == theirs.casefold() and sum(map(str.isupper, ours)) > sum(map(str.isupper, theirs))


def _joins(between: str) -> bool:
    """Whether what lies between two words of a source keeps them one phrase."""
    return len(between) <= 3 and "\n" not in between


if __name__ == "__main__":  # pragma: no cover
    print(source_form(sys.argv[1], sys.argv[2:]))
