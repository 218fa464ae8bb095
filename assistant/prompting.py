"""Prompts of the loop: the system prompt from `prompts/*.md`, sources fenced as untrusted data, and the parse
of the model's reply into a short answer, a cited explanation and the citations it actually made.

The prompt is rebuilt at each step from the question, the best sources within a token budget and short notes
(earlier queries, failed calls) instead of growing a transcript: on a CPU, prompt tokens are the cost. In a chat,
earlier turns (question and answer, citations removed) go between the system prompt and the question, the
newest that fit the window (`fit_history`); a follow-up is searched with a standalone query (`standalone_query`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files

from assistant.analysis import stem_function
from assistant.events import Source
from assistant.languages import LANGUAGES, numbers_of
from assistant.models.base import Message
from assistant.passages import STOP_WORDS, cjk_character, holds_phrase, tokenize

_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# "Answer:" and its translations ("Ответ:", "答案："), whatever the route: a label word then a colon is no answer.
_ANSWER_LABELS = ("answer", "short answer") + tuple(w for lang in LANGUAGES.values() for w in lang.answer_labels)
_LABEL = re.compile(rf"^\s*\**({'|'.join(map(re.escape, _ANSWER_LABELS))}|explanation|because)\**\s*[:：]\s*", re.I)


_PREFIX = re.compile(r"^(?:the )?(?:short |final )?answer(?: in a few words)?(?: is)?\s*[:：-]?\s+", re.I)


def trim_restatement(short: str, question: str, lang: str = "en") -> str:
    """Drop the leading and trailing words that only restate the question ("The capital of Colombia is Bogotá"
    → "Bogotá"); small models answer in sentences. Keeps the text whole if nothing new would remain.

    `lang` is the question's language (its route): its stop words count as restating, and in a language the
    index stems (assistant/languages.py) a word restates the question when its stem does ("столицей" restates
    "столица"). Korean and Japanese copulas are cut from the last word ("수메르어입니다" → "수메르어"), and in
    Chinese or Japanese, written without spaces, the longest head or tail found in the question is cut."""
    language = LANGUAGES.get(lang)
    stop = language.stop_words if language else STOP_WORDS
    short = _cut_copula(short, language.copulas if language else ())
    if question and _NO_SPACE.match(short):
        return _trim_unspaced(short, question, stop)
    words = short.split()
    if not question or len(words) < 2:
        return short
    stem = stem_function(language.stemmer if language else None)
    known = {stem(t) for t in tokenize(question)} | stop

    def restates(word: str) -> bool:
        # "No." of "No. 2 pencil" is a stop word, but as an abbreviation it is part of the answer
        tokens = tokenize(word)
        return word.rstrip(".").casefold() not in _BEFORE_NAME and all(t in stop or stem(t) in known for t in tokens)

    if len(words) == 2:
        # A two-word answer stays whole ("Pittsburgh Steelers" for "Which Steelers…?") unless it is a number and
        # the unit the question counts in ("39 años" for "¿Cuántos años tenía…?", "6 Grammys" for "How many
        # Grammys…?"): then the answer is the number.
        number = _NUMBER.fullmatch(words[0]) or any(words[0].casefold() in forms for forms in numbers_of(lang))
        return words[0] if number and not restates(words[0]) and restates(words[1]) else short

    def ends_name(i: int) -> bool:
        # the word after an initial or a title ("Henry J. Kaiser", "Mr. Chips") is the end of a name, not a restated
        # word: cutting it would leave "Henry J"; so is a regnal "I" ("Idris I", "World War I"), not the pronoun
        before = words[i - 1] if i > start else ""
        title = before[:1].isupper() and before.rstrip(".").casefold() in _BEFORE_NAME
        regnal = words[i] == "I" and before[:1].isupper()
        return bool(re.fullmatch(r"[^\W\d_]\.", before)) or title or regnal

    # An English answer that opens with a title keeps its first word, stop word though it is, when the next is a
    # capitalised word of its own: "Only Fools and Horses", "All Creatures Great and Small" (an article still goes:
    # scoring drops it anyway). Measured on the rows of HotpotQA and wiki-dev300 dev runs, both models: +4 EM of
    # 1,779 answers, none lost. Other languages' articles are cut as before ("Los Pittsburgh Steelers").
    opens_title = (
        language is None
        and words[0][:1].isupper()
        and words[1][:1].isupper()
        and words[0].casefold() not in ("a", "an", "the")
        and all(t in stop for t in tokenize(words[0]))
        and not restates(words[1])
    )
    start, end = 0, len(words)
    while start < end and restates(words[start]) and not opens_title:
        start += 1
    while end > start and restates(words[end - 1]) and not ends_name(end - 1):
        end -= 1
    if _name_goes_on(words[start:end], words[end:]):
        end = len(words)
    core = " ".join(words[start:end]).strip(" ,;:.!?\"'")
    return core if core and any(t not in stop for t in tokenize(core)) else short


def _name_goes_on(core: list[str], tail: list[str]) -> bool:
    """Whether the words cut from the end of an answer continue its name: "and Juliet" of "Tromeo and Juliet", "of
    England" of "Bank of England", though the question names Juliet or England. A capitalised core, then a joining
    word, then capitalised words (joining words between them) and nothing else."""
    if not core or len(tail) < 2 or not core[-1][:1].isupper() or tail[0].casefold() not in _JOINING:
        return False
    return tail[-1][:1].isupper() and all(w[:1].isupper() or w.casefold() in _JOINING for w in tail[1:])


_JOINING = frozenset(("and", "&", "of"))
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # "39", "1,000", "2.5"
_NO_SPACE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")  # Han and kana: no spaces between words
_JOINTS = "是为はが"  # copulas and particles left at a cut ("…首都是北京" → "是北京" → "北京")


def _cuttable(text: str, n: int) -> bool:
    """Whether `text` may be cut before its `n`th character: not inside a number or a Latin word ("超级碗50")."""
    return not all(c.isascii() and c.isalnum() for c in text[n - 1 : n + 1])


def _cut_copula(short: str, copulas: tuple[str, ...]) -> str:
    """`short` without a copula ending its last word ("수메르어입니다." → "수메르어"), when more than it is left."""
    core = short.rstrip(" .。!！")
    for ending in copulas:
        if core.endswith(ending) and len(core) > len(ending) and not core[-len(ending) - 1].isspace():
            return core[: -len(ending)]
    return short


def _trim_unspaced(short: str, question: str, stop: frozenset[str]) -> str:
    """A reply in a script without spaces less its longest head and tail (two characters or more) found in the
    question, and the copula left at each cut: "中国的首都是北京" for "中国的首都是哪里" → "北京"."""
    core = short.strip(" 。.!！?？,，")
    if core in question:  # all of it restates the question: nothing to trim to
        return short
    for _ in range(2):  # the head, then the tail, each once
        cut = next((n for n in range(len(core) - 1, 1, -1) if core[:n] in question and _cuttable(core, n)), 0)
        if cut:
            core = core[cut:].lstrip(_JOINTS)
        core = core[::-1]  # the same on the reversed text cuts the tail
        question = question[::-1]
    core = core.strip(" 。.!！?？,，")
    return core if core and core not in stop else short


def load_prompt(name: str) -> str:
    """The English text of prompts/<name>.md."""
    return files("assistant.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8").strip()


QUERY_CHARS = 100  # a query tried, as the next-step prompt lists it
_ANSWERING = ("answer_example", "answer_format", "answer_short", "closed")  # the prompts that ask for the answer
_ANSWERING_SYSTEM = ("search", "closed")  # the system prompts of the generations that answer


@dataclass(frozen=True)
class Prompts:
    """The prompts of one route: prompts/<name>.md, or the `## name` sections of prompts/<lang>.md, with
    `answer_line` (e.g. "Answer in Spanish, …") ending the prompts that ask for the answer.

    `instructions`: an application's own (the system message a client of `assistant serve` sent), added after the
    answering system prompts under prompts/instructions.md, which says they cannot lift the rules above them
    (search results stay untrusted data)."""

    lang: str = "en"
    answer_line: str = ""
    question_lang: str = "en"  # the route's language: how the answer is trimmed (`trim_restatement`)
    instructions: str = ""

    def text(self, name: str) -> str:
        """The prompt `name` of this route."""
        text = self._own(name)
        if self.answer_line and name in _ANSWERING:
            text = f"{text}\n{self.answer_line}"
        if self.instructions and name in _ANSWERING_SYSTEM:
            text = f"{text}\n\n{self._own('instructions')}\n<instructions>\n{self.instructions}\n</instructions>"
        return text

    def _own(self, name: str) -> str:
        own = language_prompts(self.lang).get(name) if self.lang != "en" else None
        return own or load_prompt(name)


ENGLISH = Prompts()


@functools.cache
def language_prompts(lang: str) -> dict[str, str]:
    """The `## name` sections of prompts/<lang>.md ({} if there is no such file)."""
    path = files("assistant.prompts").joinpath(f"{lang}.md")
    if not re.fullmatch(r"[a-z]{2,3}(?:-[a-z]{2,4})?", lang) or not path.is_file():
        return {}
    sections = re.split(r"^## +(\w+)[ \t]*$", path.read_text(encoding="utf-8"), flags=re.M)
    return {name: body.strip() for name, body in zip(sections[1::2], sections[2::2], strict=False) if body.strip()}


def shown_text(source: Source) -> str:
    """A source as the prompt shows it after its number: its title, then its text on one line."""
    return f"{source.title}: {' '.join(source.text.split())}"


def render_sources(sources: list[Source]) -> str:
    """Sources fenced as untrusted data, each under its stable number."""
    body = "\n".join(f"[{s.n}] {shown_text(s)}" for s in sources)
    return f"<sources untrusted>\n{body}\n</sources>"


def search_messages(
    question: str,
    sources: list[Source],
    notes: list[str],
    answer_prompt: str = "answer_example",
    history: Sequence[Turn] = (),
    prompts: Prompts = ENGLISH,
) -> list[Message]:
    """The messages of one answering step (after the earlier turns of a chat, if any).

    `answer_prompt` is the prompt that asks for the answer (the model's preset chooses, `Preset.answer_prompt`):
    "answer_example" shows the reply's shape by example ("Paris [2]"); SmolLM2-135M copies an example as its answer
    and gets "answer_format", the shape described (chosen on 20 TriviaQA questions with a script not kept in the
    repository, so its figure is not published); "answer_short" asks for the short answer alone, and the loop finds
    its sources after (`attribute`)."""
    parts = [render_sources(sources)] if sources else ["(no sources found)"]
    parts += notes
    parts += [f"Question: {question}", prompts.text(answer_prompt)]
    system = prompts.text("search")
    return [Message("system", system), *history_messages(history), Message("user", "\n".join(parts))]


def next_step_messages(
    question: str,
    sources: list[Source],
    queries: list[str],
    notes: list[str],
    history: Sequence[Turn] = (),
    prompts: Prompts = ENGLISH,
) -> list[Message]:
    """The messages that ask for the next tool call; sources appear by title and URL only (few tokens), fenced
    as untrusted like the sources of an answering step."""
    listing = "\n".join(f"[{s.n}] {s.title}" + (f" <{s.url}>" if s.url else "") for s in sources)
    fenced = f"<sources untrusted>\n{listing}\n</sources>" if listing else "(none)"
    tried = "; ".join(q if len(q) <= QUERY_CHARS else q[: QUERY_CHARS - 1] + "…" for q in queries)
    parts = [f"Sources so far:\n{fenced}", f"Queries tried: {tried}", *notes]
    parts.append(f"Question: {question}")
    system = prompts.text("next_step")
    return [Message("system", system), *history_messages(history), Message("user", "\n".join(parts))]


# An abstention is the whole reply: the phrase alone, or followed by punctuation or "in the sources"; never the
# first word of a title ("Unknown Pleasures", "None but the Lonely Heart", "I Don't Know Where It Comes From").
# "NA" is sodium, so only "N/A" abstains. "I don't know" may go on in lowercase ("I don't know who painted it").
_ABSTAIN_HEAD = r"(?:unknown|none|not (?:found|known|mentioned|given|stated)|n/a|no answer)"
_ABSTAIN_TAIL = (
    r"(?:\s*(?:[.,;:!(—–-]|$)|\s+(?:in|from|by|of) (?:the |these |any )?(?:sources?|texts?|passages?|context)\b)"
)
_ABSTAIN = re.compile(
    rf"^(?:{_ABSTAIN_HEAD}{_ABSTAIN_TAIL}|i (?:do not|don['’]t|cannot|can['’]t) (?:know|say|tell)"
    rf"(?:{_ABSTAIN_TAIL}|\s+(?-i:[a-z])))"
    r"|(?:sources?|texts?|passages?|context) (?:do|does|did) not (?:contain|mention|say|provide|state|give)"
    r"|no information",
    re.I,
)


def abstained(short_answer: str) -> bool:
    """Whether a short answer says the sources did not contain the answer."""
    return not short_answer.strip() or bool(_ABSTAIN.search(short_answer.strip()))


def closed_messages(question: str, history: Sequence[Turn] = (), prompts: Prompts = ENGLISH) -> list[Message]:
    """The messages of a closed-book answer."""
    user = f"Question: {question}\nReply with only the answer, in a few words."
    return [Message("system", prompts.text("closed")), *history_messages(history), Message("user", user)]


# Abbreviations that come before what they qualify: a period after them never ends a sentence ("St. Petersburg").
_BEFORE_NAME = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "st", "mt", "ft", "no", "vs")
    + ("gen", "col", "capt", "lt", "sgt", "rev", "gov", "sen")
)
# Abbreviations that may also close a sentence, like an initial ("Henry J.") or a dotted one ("U.S."): a sentence
# ends after them only when the next word opens one ("Jr. He was ...", not "J. Kaiser" or "U.S. Army").
_MAY_END = frozenset(("jr", "sr", "inc", "ltd", "co", "corp", "etc"))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=(\S+))")


def first_sentence(text: str) -> str:
    """The text up to its first real sentence end: not after an initial or an abbreviation, nor before a
    lowercase word ("Henry J. Kaiser", "St. Petersburg", "Woven vs. lamellar bone" stay whole)."""
    for end in _SENTENCE_END.finditer(text):
        if _ends_sentence(text[: end.start()], end.group(1)):
            return text[: end.start()]
    return text


def _ends_sentence(before: str, next_word: str) -> bool:
    if next_word[:1].islower():
        return False
    if not before.endswith("."):
        return True  # "!" or "?"
    word = before.split()[-1][:-1].lstrip("(\"'")
    if word.casefold() in _BEFORE_NAME:
        return False
    if (len(word) == 1 and word.isupper()) or "." in word or word.casefold() in _MAY_END:
        return next_word.strip("\"'(").casefold() in STOP_WORDS
    return True


@dataclass
class ParsedAnswer:
    """A reply split into its parts; `cited` holds the source numbers that exist, `dropped` the others."""

    answer: str
    short_answer: str
    cited: list[int]
    dropped: list[int]


def parse_answer(text: str, shown: set[int], question: str = "", lang: str = "en") -> ParsedAnswer:
    """Split a reply into short answer and explanation; remove citations of sources that were never shown.
    `lang`: the question's language, for trimming the answer (`trim_restatement`)."""
    cited: list[int] = []
    dropped: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        good = [n for n in numbers if n in shown]
        dropped.extend(n for n in numbers if n not in shown)
        cited.extend(n for n in good if n not in cited)
        return "".join(f"[{n}]" for n in good)

    clean = _CITATION.sub(keep, text.strip())
    lines = [line for line in clean.splitlines() if line.strip()]
    short = ""
    for line in lines:
        m = _LABEL.match(line)
        if m and m.group(1).lower() in _ANSWER_LABELS:
            short = line[m.end() :]
            break
    if not short and lines:
        short = first_sentence(_LABEL.sub("", lines[0]))
    short = _CITATION.sub("", short).strip().strip("*").strip()
    short = _PREFIX.sub("", re.sub(r"\s+", " ", short).rstrip(".").strip())
    if not abstained(short):  # "I don't know who painted it" must not shrink to "know"
        short = trim_restatement(short, question, lang)
    answer = "\n".join(_LABEL.sub("", line) if i else line for i, line in enumerate(lines))
    answer = re.sub(r"^\s*\**answer\**\s*[:：]\s*", "", answer, flags=re.I)
    return ParsedAnswer(answer=answer.strip(), short_answer=short, cited=cited, dropped=sorted(set(dropped)))


def attribute(short_answer: str, question: str, sources: list[Source]) -> list[int]:
    """Sources that support an uncited answer: each run of its words that does not restate the question occurs
    in the source as a whole phrase (accents, case and punctuation aside), and the runs say something: a word
    of two or more characters that is not a stop word, such as a name or a year. "1" or "the" is in any text and
    supports nothing; "Bogota" supports "Bogotá"; "Paris" is not found in "Parisian"."""
    if abstained(short_answer):
        return []
    asked_words = _words(question)
    asked = set(asked_words)
    # A kana or Han character is part of a word, not one: it restates the question only inside a pair of
    # characters the question has too ("防守" does; 首 of "首尔" does not, though "韩国的首都" holds 首).
    pairs = zip(asked_words, asked_words[1:], strict=False)
    asked_pairs = {a + b for a, b in pairs if cjk_character(a) and cjk_character(b)}
    words = _words(short_answer)
    runs: list[list[str]] = [[]]
    for i, word in enumerate(words):  # "Sgt. Pepper's ..., a Beatles album": the question named the Beatles
        if cjk_character(word):
            restated = any(words[j] + words[j + 1] in asked_pairs for j in (i - 1, i) if 0 <= j < len(words) - 1)
        else:
            restated = word in asked
        if restated:
            runs.append([])
        else:
            runs[-1].append(word)
    phrases = [" ".join(run) for run in map(_strip_stop_words, runs) if run]
    if not any(_says_something(phrase.split()) for phrase in phrases):
        return _named(_strip_stop_words(words), sources)
    # A phrase cannot run from the title into the text: no word token is "|".
    texts = [(s.n, f"{' '.join(_words(s.title))} | {' '.join(_words(s.text))}") for s in sources]
    return [n for n, text in texts if all(holds_phrase(text, phrase) for phrase in phrases)]


def _named(words: list[str], sources: list[Source]) -> list[int]:
    """Sources about an answer that only restates the question, one of the things it names ("Which band formed
    first, Letters to Cleo or X?" → "Letters to Cleo"): those whose title holds the whole answer. Nothing for an
    answer that says nothing of its own ("yes", "album")."""
    phrase = " ".join(words)
    if phrase in ("yes", "no") or not _says_something(words):
        return []
    return [s.n for s in sources if holds_phrase(" ".join(_words(s.title)), phrase)]


def _says_something(words: list[str]) -> bool:
    """Whether a run of answer words could only be found where the answer is: a word of two or more characters
    that is not a stop word, or two kana or Han characters (a Chinese or Japanese word: "北京")."""
    return any(len(w) > 1 and w not in STOP_WORDS for w in words) or sum(map(cjk_character, words)) >= 2


def supported(short_answer: str, question: str, sources: list[Source]) -> bool:
    """Whether one of `sources` holds the answer (`attribute`); "unknown" never is. Yes/no answers cannot be found
    in a text, so they count as supported."""
    if short_answer.strip().lower().rstrip(".!") in ("yes", "no"):
        return True
    return not abstained(short_answer) and bool(attribute(short_answer, question, sources))


def _words(text: str) -> list[str]:
    """Word tokens without accents, case or punctuation: "Bogotá" and "bogota" are the same word."""
    return tokenize("".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)))


def _strip_stop_words(run: list[str]) -> list[str]:
    """The run without stop words at its ends: "in 1969" → "1969", "Bank of England" stays whole."""
    start, end = 0, len(run)
    while start < end and run[start] in STOP_WORDS:
        start += 1
    while end > start and run[end - 1] in STOP_WORDS:
        end -= 1
    return run[start:end]


# --- earlier turns of a chat -----------------------------------------------------------------------------------

_TURN_OVERHEAD = 8  # what a chat template adds around one message (role markers, separators)
_REFERS_BACK = frozenset(
    ("he", "she", "it", "they", "him", "her", "his", "hers", "its", "their", "theirs", "them")
    + ("this", "that", "these", "those", "there", "then")
)
_OPENER = re.compile(r"^(?:and|but|also|so|what about|how about)\b[\s,]*", re.I)


@dataclass
class Turn:
    """An earlier question of a chat and the answer it got."""

    question: str
    answer: str

    def condensed(self) -> Turn:
        """The question with only the short answer."""
        return Turn(self.question, parse_answer(self.answer, set(), self.question).short_answer)


def history_messages(history: Sequence[Turn]) -> list[Message]:
    """Earlier turns as user/assistant messages. Their citations are removed: those numbers named the sources
    of their own turn, and the current sources reuse them."""
    messages: list[Message] = []
    for turn in history:
        answer = " ".join(re.sub(r"\s*" + _CITATION.pattern, "", turn.answer).split())
        messages += [Message("user", turn.question), Message("assistant", answer)]
    return messages


def fit_history(history: Sequence[Turn], budget: int, count: Callable[[str], int]) -> list[Turn]:
    """The newest turns that fit `budget` tokens: the oldest are dropped first, and a turn too long to fit whole
    is kept as its question and short answer when that fits."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(history):
        for candidate in (turn, turn.condensed()):
            cost = sum(count(m.content) + _TURN_OVERHEAD for m in history_messages([candidate]))
            if used + cost <= budget:
                kept.append(candidate)
                used += cost
                break
        else:
            break
    return kept[::-1]


def standalone_query(question: str, history: Sequence[Turn]) -> str:
    """The search query for a chat question, built without a generation. A follow-up (a word that refers back,
    an opener like "and", or at most one content word and no name) gets the content words of the previous
    question appended, and the previous short answer too unless it names its own subject: "and when was he
    born?" → "when was he born? Rembrandt painted night watch"; "what about Vermeer?" → "Vermeer? painted night
    watch". Other questions are searched as they are."""
    if not history:
        return question
    words = tokenize(question)
    content = [w for w in words if w not in STOP_WORDS]
    named = any(w[:1].isupper() for w in question.split()[1:])
    if not (_REFERS_BACK & set(words) or _OPENER.match(question) or (len(content) < 2 and not named)):
        return question
    last = history[-1]
    short = parse_answer(last.answer, set(), last.question).short_answer
    context = [] if abstained(short) or named else [short]
    seen = set(words) | set(tokenize(short))
    context += [w for w in dict.fromkeys(tokenize(last.question)) if w not in STOP_WORDS and w not in seen]
    return " ".join([_OPENER.sub("", question).strip(), *context]).strip()
