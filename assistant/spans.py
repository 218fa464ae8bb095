"""A short answer in its source's own form: "Bogota" → "Bogotá" when a shown source writes "Bogotá".

Small models drop accents, change case and punctuation when they copy a name. When the answer's words are, word
for word, a run of a source's words up to case, accents (compatibility forms too) and punctuation between
words (each Han or kana character a word), the answer becomes that run as the source writes it. Nothing else
counts: a transliteration ("moskva" for "Москва") or a translation is not the same words, and an answer found
nowhere stays as the model wrote it; nor are capitals the source lacks taken away ("The Humber" stays, though
the source says "the Humber").

A number from 2 to 10 written in digits takes the word its sources write when they never write the digits
("4" → "cuatro", "четырьмя"): the same value in the source's form, as extractive answers are scored.

    python -m assistant.spans "bogota" "Bogotá, officially Bogotá, Distrito Capital"    # prints Bogotá
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence

from assistant.passages import words_in


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


def number_form(answer: str, texts: Sequence[str], numbers: Sequence[frozenset[str]]) -> str:
    """A number from 2 to 10 that the model wrote in digits, as the first of `texts` that writes it in words does
    ("4" → "cuatro"), when none of them holds the digits; `numbers`: the forms of 2, 3, … 10 in the question's
    language (assistant/languages.py). Anything else stays as it is."""
    digits = answer.strip()
    if not digits.isdecimal() or not 2 <= int(digits) < 2 + len(numbers):
        return answer
    forms = {_fold(form) for form in numbers[int(digits) - 2]}
    words = [m.group() for text in texts for m in words_in(text)]
    if str(int(digits)) in words:
        return answer
    return next((word for word in words if _fold(word) in forms), answer)


def _capitalized(ours: str, theirs: str) -> bool:
    """Whether the answer differs from the source only by capitals the source lacks ("The Humber" for "the
    Humber" mid-sentence): the answer's own capitals are kept."""
    return ours.casefold() == theirs.casefold() and sum(map(str.isupper, ours)) > sum(map(str.isupper, theirs))


def _joins(between: str) -> bool:
    """Whether what lies between two words of a source keeps them one phrase."""
    return len(between) <= 3 and "\n" not in between


if __name__ == "__main__":  # pragma: no cover
    print(source_form(sys.argv[1], sys.argv[2:]))
