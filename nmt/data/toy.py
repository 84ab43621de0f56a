"""Built-in, deterministic English -> Portuguese toy parallel corpus.

The corpus comes from a small hand-written grammar, so it needs no download and carries no
third-party text. Every sentence has the shape ``SUBJECT VERB OBJECT [DATE].`` and exercises
phenomena a translation model has to learn rather than copy:

* reordering: adjectives follow the noun (``the red car`` -> ``o carro vermelho``);
* gender/number agreement of determiners and adjectives (``o/a/os/as``, ``um/uma``,
  ``este/esta/estes/estas``, ``vermelho/vermelha/vermelhos/vermelhas``, ``grande/grandes``);
* numbers written in words, with gender for one and two (``two houses`` -> ``duas casas``);
* verb agreement with the subject (``sees/see`` -> ``vê/veem``, ``has/have`` -> ``tem/têm``) and
  verbs governing ``de`` with contractions (``likes the car`` -> ``gosta do carro``);
* dates (``on November 22, 2026`` -> ``em 22 de novembro de 2026``).

Portuguese follows Brazilian spelling. Each source sentence has exactly one translation (no
synonyms, no optional words), which keeps the task learnable to a very high BLEU.
"""

from __future__ import annotations

import calendar
import random
from pathlib import Path
from typing import NamedTuple

from nmt.files import atomic_open, check_dir

SPLITS = ("train", "valid", "test")
LANGS = ("en", "pt")
MIN_EVAL_PAIRS = 50
YEAR_RANGE = (1990, 2030)  # inclusive
MAX_SIZE = 10_000_000


class Noun(NamedTuple):
    en: str
    en_pl: str
    pt: str
    pt_pl: str
    gender: str  # "m" or "f"
    animate: bool  # only animate nouns are used as subjects, so sentences stay plausible


class Adjective(NamedTuple):
    en: str
    m: str
    f: str
    m_pl: str
    f_pl: str

    def form(self, gender: str, plural: bool) -> str:
        """Portuguese form agreeing with a noun of ``gender`` ("m"/"f") and number."""
        if plural:
            return self.m_pl if gender == "m" else self.f_pl
        return self.m if gender == "m" else self.f


class Verb(NamedTuple):
    en: str  # third person singular
    en_pl: str
    pt: str
    pt_pl: str
    takes_de: bool  # the object is introduced by "de", which contracts with articles


class Month(NamedTuple):
    en: str
    pt: str


NOUNS: tuple[Noun, ...] = (
    Noun("man", "men", "homem", "homens", "m", True),
    Noun("woman", "women", "mulher", "mulheres", "f", True),
    Noun("boy", "boys", "menino", "meninos", "m", True),
    Noun("girl", "girls", "menina", "meninas", "f", True),
    Noun("dog", "dogs", "cão", "cães", "m", True),
    Noun("cat", "cats", "gato", "gatos", "m", True),
    Noun("bird", "birds", "pássaro", "pássaros", "m", True),
    Noun("horse", "horses", "cavalo", "cavalos", "m", True),
    Noun("car", "cars", "carro", "carros", "m", False),
    Noun("house", "houses", "casa", "casas", "f", False),
    Noun("flower", "flowers", "flor", "flores", "f", False),
    Noun("city", "cities", "cidade", "cidades", "f", False),
    Noun("book", "books", "livro", "livros", "m", False),
    Noun("table", "tables", "mesa", "mesas", "f", False),
    Noun("tree", "trees", "árvore", "árvores", "f", False),
    Noun("boat", "boats", "barco", "barcos", "m", False),
    Noun("window", "windows", "janela", "janelas", "f", False),
    Noun("key", "keys", "chave", "chaves", "f", False),
    Noun("train", "trains", "trem", "trens", "m", False),
    Noun("song", "songs", "canção", "canções", "f", False),
)
SUBJECT_NOUNS: tuple[Noun, ...] = tuple(n for n in NOUNS if n.animate)

ADJECTIVES: tuple[Adjective, ...] = (
    Adjective("red", "vermelho", "vermelha", "vermelhos", "vermelhas"),
    Adjective("big", "grande", "grande", "grandes", "grandes"),
    Adjective("small", "pequeno", "pequena", "pequenos", "pequenas"),
    Adjective("new", "novo", "nova", "novos", "novas"),
    Adjective("old", "velho", "velha", "velhos", "velhas"),
    Adjective("tall", "alto", "alta", "altos", "altas"),
    Adjective("happy", "feliz", "feliz", "felizes", "felizes"),
    Adjective("blue", "azul", "azul", "azuis", "azuis"),
    Adjective("green", "verde", "verde", "verdes", "verdes"),
    Adjective("beautiful", "bonito", "bonita", "bonitos", "bonitas"),
    Adjective("yellow", "amarelo", "amarela", "amarelos", "amarelas"),
)

VERBS: tuple[Verb, ...] = (
    Verb("sees", "see", "vê", "veem", False),
    Verb("has", "have", "tem", "têm", False),
    Verb("likes", "like", "gosta", "gostam", True),
    Verb("needs", "need", "precisa", "precisam", True),
    Verb("wants", "want", "quer", "querem", False),
    Verb("buys", "buy", "compra", "compram", False),
    Verb("finds", "find", "encontra", "encontram", False),
)

# (English, Portuguese masculine, Portuguese feminine); only one and two inflect for gender.
NUMBERS: tuple[tuple[str, str, str], ...] = (
    ("one", "um", "uma"),
    ("two", "dois", "duas"),
    ("three", "três", "três"),
    ("four", "quatro", "quatro"),
    ("five", "cinco", "cinco"),
    ("six", "seis", "seis"),
    ("seven", "sete", "sete"),
    ("eight", "oito", "oito"),
    ("nine", "nove", "nove"),
    ("ten", "dez", "dez"),
    ("eleven", "onze", "onze"),
    ("twelve", "doze", "doze"),
)

# English determiner -> (Portuguese masculine, feminine), per grammatical number.
SINGULAR_DETERMINERS: dict[str, tuple[str, str]] = {
    "the": ("o", "a"),
    "a": ("um", "uma"),
    "this": ("este", "esta"),
}
PLURAL_DETERMINERS: dict[str, tuple[str, str]] = {
    "the": ("os", "as"),
    "these": ("estes", "estas"),
}

# "de" fuses with definite articles and demonstratives; before "um"/"uma" and numbers it stays
# separate, as in standard written Brazilian Portuguese.
DE_CONTRACTIONS: dict[str, str] = {
    "o": "do",
    "a": "da",
    "os": "dos",
    "as": "das",
    "este": "deste",
    "esta": "desta",
    "estes": "destes",
    "estas": "destas",
}

MONTHS: tuple[Month, ...] = (
    Month("January", "janeiro"),
    Month("February", "fevereiro"),
    Month("March", "março"),
    Month("April", "abril"),
    Month("May", "maio"),
    Month("June", "junho"),
    Month("July", "julho"),
    Month("August", "agosto"),
    Month("September", "setembro"),
    Month("October", "outubro"),
    Month("November", "novembro"),
    Month("December", "dezembro"),
)

ADJECTIVE_PROB = 0.4
DATE_PROB = 0.35


def eval_size(size: int) -> int:
    """Number of pairs in each of the valid and test splits for ``size`` training pairs."""
    return max(size // 20, MIN_EVAL_PAIRS)


def _noun_phrase(rng: random.Random, nouns: tuple[Noun, ...]) -> tuple[list[str], list[str], bool]:
    """Returns (English words, Portuguese words, is_plural)."""
    noun = rng.choice(nouns)
    adj = rng.choice(ADJECTIVES) if rng.random() < ADJECTIVE_PROB else None
    fem = noun.gender == "f"
    kind = rng.random()
    if kind < 0.45:
        plural = False
        en_det = rng.choice(("the", "the", "a", "this"))
        pt_det = SINGULAR_DETERMINERS[en_det][fem]
    elif kind < 0.7:
        plural = True
        en_det = rng.choice(("the", "the", "these"))
        pt_det = PLURAL_DETERMINERS[en_det][fem]
    else:
        en_det, pt_m, pt_f = rng.choice(NUMBERS)
        plural = en_det != "one"
        pt_det = pt_f if fem else pt_m

    en = [en_det]
    pt = [pt_det]
    if adj is not None:
        en.append(adj.en)
    en.append(noun.en_pl if plural else noun.en)
    pt.append(noun.pt_pl if plural else noun.pt)
    if adj is not None:
        pt.append(adj.form(noun.gender, plural))
    if en[0] == "a" and en[1][0] in "aeiou":
        en[0] = "an"
    return en, pt, plural


def _date(rng: random.Random) -> tuple[list[str], list[str]]:
    year = rng.randint(*YEAR_RANGE)
    month_idx = rng.randrange(12)
    # Real calendar lengths so that no impossible date such as February 30 appears.
    day = rng.randint(1, calendar.monthrange(year, month_idx + 1)[1])
    month = MONTHS[month_idx]
    return ["on", month.en, f"{day},", str(year)], ["em", str(day), "de", month.pt, "de", str(year)]


def _capitalise(words: list[str]) -> str:
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


def sample_pair(rng: random.Random) -> tuple[str, str]:
    """Draws one (English, Portuguese) sentence pair using ``rng`` (duplicates are possible)."""
    subj_en, subj_pt, subj_plural = _noun_phrase(rng, SUBJECT_NOUNS)
    verb = rng.choice(VERBS)
    obj_en, obj_pt, _ = _noun_phrase(rng, NOUNS)

    en = [*subj_en, verb.en_pl if subj_plural else verb.en, *obj_en]
    pt = [*subj_pt, verb.pt_pl if subj_plural else verb.pt]
    if verb.takes_de:
        contracted = DE_CONTRACTIONS.get(obj_pt[0])
        pt += [contracted, *obj_pt[1:]] if contracted else ["de", *obj_pt]
    else:
        pt += obj_pt
    if rng.random() < DATE_PROB:
        date_en, date_pt = _date(rng)
        en += date_en
        pt += date_pt
    return _capitalise(en), _capitalise(pt)


def generate(size: int = 20000, seed: int = 1) -> dict[str, list[tuple[str, str]]]:
    """Generates the toy corpus as ``{"train": [...], "valid": [...], "test": [...]}``.

    ``size`` is the number of training pairs; valid and test get ``eval_size(size)`` pairs each,
    i.e. ``max(size // 20, 50)``. Each item is an ``(english, portuguese)`` pair. All source
    sentences are unique across the three splits, so no evaluation sentence is seen in training.
    The output depends only on ``(size, seed)``. Raises ``ValueError`` if ``size < 1``.
    """
    if not 1 <= size <= MAX_SIZE:  # pairs are held in memory, ~200 bytes each
        raise ValueError(
            f"toy corpus size must be a positive number of pairs, at most {MAX_SIZE:,}, got {size}"
        )
    n_eval = eval_size(size)
    total = size + 2 * n_eval
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    # The grammar yields far more than 10^8 distinct sentences, so this cap only stops an
    # absurd request from looping for ever once the space is nearly exhausted.
    max_draws = 20 * total + 1000
    draws = 0
    while len(pairs) < total:
        if draws == max_draws:
            raise ValueError(f"could not draw {total} unique toy sentences; size {size} too large")
        draws += 1
        en, pt = sample_pair(rng)
        if en not in seen:
            seen.add(en)
            pairs.append((en, pt))
    return {
        "train": pairs[:size],
        "valid": pairs[size : size + n_eval],
        "test": pairs[size + n_eval :],
    }


def write_corpus(out_dir: str | Path, size: int = 20000, seed: int = 1) -> dict[str, int]:
    """Writes ``{train,valid,test}.{en,pt}`` under ``out_dir`` (created if missing).

    Files are UTF-8, one sentence per line, ``\\n`` line endings; line ``i`` of ``X.en`` and
    ``X.pt`` form a pair. Existing files are replaced atomically. Returns the number of pairs per
    split, e.g. ``{"train": 20000, "valid": 1000, "test": 1000}``.
    """
    corpus = generate(size=size, seed=seed)  # first, so a bad size creates no directory
    out = Path(out_dir)
    check_dir(out, "-o")
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        pairs = corpus[split]
        for i, lang in enumerate(LANGS):
            # Atomic so a reader never sees a half-written corpus file.
            with atomic_open(out / f"{split}.{lang}", "w", encoding="utf-8", newline="\n") as f:
                f.writelines(pair[i] + "\n" for pair in pairs)
    return {split: len(corpus[split]) for split in SPLITS}


def describe() -> str:
    """What the toy grammar can say: the sentence shape and every English word it uses, so
    that a user of a model trained on it knows what to type (anything else is out of its
    world, and the model answers nonsense)."""
    numbers = ", ".join(n[0] for n in NUMBERS)
    determiners = ", ".join(dict.fromkeys([*SINGULAR_DETERMINERS, "an", *PLURAL_DETERMINERS]))
    lines = [
        "Every sentence: SUBJECT VERB OBJECT [on MONTH DAY, YEAR].",
        "  SUBJECT and OBJECT: DETERMINER or NUMBER, [ADJECTIVE], NOUN (plural after these,",
        "  the plural the and numbers above one); subjects are people and animals.",
        f"determiners: {determiners}",
        f"numbers:     {numbers}",
        f"adjectives:  {', '.join(a.en for a in ADJECTIVES)}",
        f"nouns:       {', '.join(f'{n.en}/{n.en_pl}' for n in NOUNS)}",
        f"subjects:    {', '.join(n.en for n in SUBJECT_NOUNS)} (and their plurals)",
        f"verbs:       {', '.join(f'{v.en}/{v.en_pl}' for v in VERBS)}",
        f"dates:       on {MONTHS[0].en} 3, {YEAR_RANGE[0]} ... {YEAR_RANGE[1]}",
        'e.g. "The tall girl sees two red cars on May 3, 2021."',
        "Sentences are capitalized and end with a full stop, as in the corpus.",
    ]
    return "\n".join(lines)
