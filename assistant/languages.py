"""The language table: every language with a built-in route, in one place: its name and search region (routing),
how the local index processes its text (search), and how its answers are shaped (trimming).

Each choice other than the default was measured on dev data (docs/results.md, "Non-English retrieval"); a field
left at its default was not measured, or did not help:

- `stemmer`: the Snowball algorithm (PyStemmer) the index stems this language's passages and queries with. Chosen
  where it raised the gold passage's rank on XQuAD: ar de el es ro ru tr. Hindi measured no gain, English a gain
  of one question in 300 (so English indexes keep their words as they are); fr it nl pl pt uk have no dev data.
- Scripts written without spaces (Han, kana, Hangul, Thai) are cut into character n-grams whatever the language
  (assistant/analysis.py): measured on XQuAD zh and th and TyDi QA ko; Japanese follows by script, unmeasured.
- `stop_words`: glue and question words. An answer's leading and trailing words that only restate the question
  are trimmed (assistant/prompting.py, `trim_restatement`); these words count as restating it.
- `answer_labels`: words a reply opens its answer with ("Ответ: Богота"), removed like "Answer:".
- `copulas`: endings a small model glues to the answer in a sentence-like reply ("수메르어입니다": "it is
  Sumerian"), cut from the answer's last word.
- `numbers`: the words for two to ten, each number's written forms (Russian's cases: "четыре", "четырьмя"). A
  model that answers "4" where its sources write only "cuatro" gets the source's word (assistant/spans.py,
  `number_form`). Left empty where a digit's word is also a common other word (Vietnamese "năm" is also
  "year"; Chinese has no ten, 十 also being "very" in 十分), and where no one here reads the language. Korean has
  its native numbers (일곱) alone; Chinese its numerals, which count only standing alone (not the 四 of 十四).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Language:
    """One routed language: what routing, the index and answer shaping need to know of it."""

    name: str  # in English, for "Answer in <name>"
    region: str  # the ddgs/searxng region of its searches
    script: str  # the script its answers are written in (`evals/language.py` checks it)
    stemmer: str | None = None
    stop_words: frozenset[str] = field(default_factory=frozenset)
    answer_labels: tuple[str, ...] = ()
    copulas: tuple[str, ...] = ()
    numbers: tuple[frozenset[str], ...] = ()  # the forms of 2, 3, … 10


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _numbers(text: str) -> tuple[frozenset[str], ...]:
    """The forms of two to ten, "|" between numbers: "two | three | …"."""
    return tuple(_words(forms) for forms in text.split("|"))


# English has no entry below (its questions take the default route); its numbers live here
ENGLISH_NUMBERS = _numbers("two | three | four | five | six | seven | eight | nine | ten")


# Hindi has no ddgs region of its own: India's.
LANGUAGES: dict[str, Language] = {
    "ar": Language(
        "Arabic",
        "xa-ar",
        "Arabic",
        "arabic",
        _words("ما ماذا من متى أين كم كيف لماذا هل أي التي الذي في على من إلى عن مع هو هي كان كانت و أو ثم"),
        ("الإجابة", "الجواب"),
        numbers=_numbers(
            "اثنان اثنين اثنتان اثنتين | ثلاثة ثلاث | أربعة أربع | خمسة خمس | ستة ست | "
            "سبعة سبع | ثمانية ثماني ثمان | تسعة تسع | عشرة عشر"
        ),
    ),
    "de": Language(
        "German",
        "de-de",
        "Latin",
        "german",
        _words(
            "der die das den dem des ein eine einen einem einer eines und oder in im an am auf aus bei mit von vom "
            "zu zum zur für ist sind war waren wurde wurden hat haben hatte wer was wann wo wie welche welcher "
            "welches welchen wieviel viele"
        ),
        ("antwort",),
        numbers=_numbers("zwei | drei | vier | fünf | sechs | sieben | acht | neun | zehn"),
    ),
    "el": Language(
        "Greek",
        "gr-el",
        "Greek",
        "greek",
        _words(
            "ο η το οι τα του της των τον την ένας μια ένα και ή σε στο στη στην στον στα με από για είναι ήταν "
            "ποιος ποια ποιο ποιοι ποιες τι πότε πού πώς πόσα πόσοι πόσες"
        ),
        ("απάντηση",),
        numbers=_numbers(
            "δύο | τρία τρεις τριών | τέσσερα τέσσερις τεσσάρων | πέντε | έξι | επτά εφτά | "
            "οκτώ οχτώ | εννέα εννιά | δέκα"
        ),
    ),
    "es": Language(
        "Spanish",
        "es-es",
        "Latin",
        "spanish",
        _words(
            "el la los las un una unos unas lo y o de del en a al con por para que es son fue fueron era eran "
            "qué quién quiénes cuál cuáles cuándo dónde cómo cuánto cuántos cuántas se su sus"
        ),
        ("respuesta",),
        numbers=_numbers("dos | tres | cuatro | cinco | seis | siete | ocho | nueve | diez"),
    ),
    "fr": Language(
        "French",
        "fr-fr",
        "Latin",
        None,
        _words(
            "le la les l un une des du de d et ou en à au aux avec par pour que qu est sont était étaient a ont "
            "qui quoi quel quelle quels quelles quand où comment combien se sa son ses"
        ),
        ("réponse",),
        numbers=_numbers("deux | trois | quatre | cinq | six | sept | huit | neuf | dix"),
    ),
    "hi": Language(
        "Hindi",
        "in-en",
        "Devanagari",
        None,
        _words("क्या कौन किस किसे किसने कब कहाँ कहां कैसे कितने कितना कितनी का की के में से को ने है हैं था थी थे और या पर"),
        ("उत्तर",),
    ),
    "it": Language(
        "Italian",
        "it-it",
        "Latin",
        None,
        _words(
            "il lo la i gli le un uno una di del della dei delle in nel nella a al alla da dal con per e o che è "
            "sono era erano chi cosa quale quali quando dove come quanto quanti"
        ),
        ("risposta",),
        numbers=_numbers("due | tre | quattro | cinque | sei | sette | otto | nove | dieci"),
    ),
    "ja": Language(
        "Japanese",
        "jp-jp",
        "Han",
        None,
        _words("の は が を に で と も へ から まで です ます だ 何 誰 いつ どこ どの どれ どう いくつ"),
        ("答え",),
        ("です", "である", "だ"),
    ),
    "ko": Language(
        "Korean",
        "kr-kr",
        "Hangul",
        None,
        _words(
            "무엇 무엇인가 무엇인가요 누구 누구인가 누구인가요 언제 어디 어디인가요 어떤 어느 몇 얼마 얼마나 왜 어떻게"
        ),
        ("답", "정답"),
        ("입니다", "이에요", "예요", "이다", "이요"),
        # native numbers, standing alone ("일곱 개의 별"); the Sino-Korean ones (이, 삼, 사) are common syllables
        numbers=_numbers("둘 | 셋 | 넷 | 다섯 | 여섯 | 일곱 | 여덟 | 아홉 | 열"),
    ),
    "nl": Language(
        "Dutch",
        "nl-nl",
        "Latin",
        None,
        _words(
            "de het een en of in op aan van voor met bij uit is zijn was waren werd wie wat wanneer waar hoe "
            "welke welk hoeveel"
        ),
        ("antwoord",),
        numbers=_numbers("twee | drie | vier | vijf | zes | zeven | acht | negen | tien"),
    ),
    "pl": Language(
        "Polish",
        "pl-pl",
        "Latin",
        None,
        _words(
            "i lub w we na z ze do od o po za przez jest są był była było były kto co kiedy gdzie jak jaki jaka ile"
        ),
        ("odpowiedź",),
    ),
    "pt": Language(
        "Portuguese",
        "pt-pt",
        "Latin",
        None,
        _words(
            "o a os as um uma de do da dos das em no na nos nas e ou por para com que é são foi foram era quem "
            "qual quais quando onde como quanto quantos"
        ),
        ("resposta",),
        numbers=_numbers("dois duas | três | quatro | cinco | seis | sete | oito | nove | dez"),
    ),
    "ro": Language(
        "Romanian",
        "ro-ro",
        "Latin",
        "romanian",
        _words(
            "un o unui unei și sau în la de din pe cu pentru că este sunt era au a fost cine ce care când unde "
            "cum cât câte câți al ale lui"
        ),
        ("răspuns",),
        numbers=_numbers("doi două | trei | patru | cinci | șase | șapte | opt | nouă | zece"),
    ),
    "ru": Language(
        "Russian",
        "ru-ru",
        "Cyrillic",
        "russian",
        _words(
            "и или в во на с со к по о об от до из за для у что кто какой какая какое какие каких каком когда "
            "где как сколько почему чем чего чей является был была было были это"
        ),
        ("ответ",),
        numbers=_numbers(
            "два две двух двум двумя | три трёх трём тремя | четыре четырёх четырём четырьмя | "
            "пять пяти пятью | шесть шести шестью | семь семи семью | восемь восьми восемью | "
            "девять девяти девятью | десять десяти десятью"
        ),
    ),
    "th": Language(
        "Thai", "th-th", "Thai", None, _words("อะไร ใคร เมื่อไร ที่ไหน อย่างไร เท่าไร กี่ คือ เป็น ของ ที่ ใน และ"), ("คำตอบ",)
    ),
    "tr": Language(
        "Turkish",
        "tr-tr",
        "Latin",
        "turkish",
        _words("bir ve veya ile de da mi mı mu mü ne kim kimin nerede ne zaman nasıl hangi kaç neden nedir kimdir"),
        ("cevap", "yanıt"),
        numbers=_numbers("iki | üç | dört | beş | altı | yedi | sekiz | dokuz | on"),
    ),
    "uk": Language(
        "Ukrainian",
        "ua-uk",
        "Cyrillic",
        None,
        _words(
            "і й та або в у на з із до від по про за для що хто який яка яке які коли де як скільки чому є був була"
        ),
        ("відповідь",),
    ),
    "vi": Language(
        "Vietnamese",
        "vn-vi",
        "Latin",
        None,
        _words("là của và hoặc trong ở tại với cho các những một cái gì ai nào khi nào đâu bao nhiêu sao thế"),
        ("trả lời", "đáp án"),
    ),
    "zh": Language(
        "Chinese",
        "cn-zh",
        "Han",
        None,
        _words("的 是 在 了 和 与 有 为 什么 谁 哪 哪里 哪个 哪些 何时 多少 几 怎么 如何 吗 呢"),
        ("答案", "回答"),
        # ten has no form: 十 is also "very" (十分) and "cross" (十字); a numeral inside a number (十四, 第四)
        # does not count (spans.number_form)
        numbers=_numbers("二 两 | 三 | 四 | 五 | 六 | 七 | 八 | 九 |"),
    ),
}


def stemmer_of(code: str) -> str | None:
    """The Snowball algorithm the index uses for language `code`, or None (its words are kept as they are)."""
    language = LANGUAGES.get(code)
    return language.stemmer if language else None


def numbers_of(code: str) -> tuple[frozenset[str], ...]:
    """The forms of two to ten in language `code`: English's for English and any language without a route."""
    language = LANGUAGES.get(code)
    return language.numbers if language else ENGLISH_NUMBERS
