import calendar
import random
import re
from pathlib import Path

import pytest

from nmt.data import toy

NOUN_BY_EN_PL = {n.en_pl: n for n in toy.NOUNS}
NOUN_BY_EN = {n.en: n for n in toy.NOUNS}
ADJ_BY_EN = {a.en: a for a in toy.ADJECTIVES}
VERB_BY_EN = {v.en: (v, False) for v in toy.VERBS} | {v.en_pl: (v, True) for v in toy.VERBS}
MONTH_BY_EN = {m.en: m for m in toy.MONTHS}
DE_FORMS = {"de", "do", "da", "dos", "das", "deste", "desta", "destes", "destas"}
NUMBER_BY_EN = {en: (m, f) for en, m, f in toy.NUMBERS}


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[tuple[str, str]]]:
    return toy.generate(size=3000, seed=7)


@pytest.fixture(scope="module")
def pairs(corpus) -> list[tuple[str, str]]:
    return [p for split in toy.SPLITS for p in corpus[split]]


def words(sentence: str) -> list[str]:
    return sentence.rstrip(".").split()


def test_deterministic_for_same_seed_and_differs_across_seeds():
    assert toy.generate(size=300, seed=3) == toy.generate(size=300, seed=3)
    assert toy.generate(size=300, seed=3)["train"] != toy.generate(size=300, seed=4)["train"]


def test_does_not_touch_global_random_state():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    toy.generate(size=100, seed=1)
    assert random.random() == expected


@pytest.mark.parametrize(("size", "n_eval"), [(1, 50), (100, 50), (1000, 50), (3000, 150)])
def test_split_sizes(size, n_eval):
    c = toy.generate(size=size, seed=1)
    assert set(c) == set(toy.SPLITS)
    assert len(c["train"]) == size
    assert len(c["valid"]) == len(c["test"]) == n_eval == toy.eval_size(size)


@pytest.mark.parametrize("size", [0, -5])
def test_rejects_non_positive_size(size, tmp_path: Path):
    with pytest.raises(ValueError, match="positive"):
        toy.generate(size=size)
    with pytest.raises(ValueError):
        toy.write_corpus(tmp_path / "out", size=size)
    assert not (tmp_path / "out").exists()


def test_sources_unique_and_splits_disjoint(corpus):
    sources = [en for split in toy.SPLITS for en, _ in corpus[split]]
    assert len(sources) == len(set(sources))
    train = {en for en, _ in corpus["train"]}
    assert train.isdisjoint(en for en, _ in corpus["valid"])
    assert train.isdisjoint(en for en, _ in corpus["test"])


def test_translation_is_a_function_of_the_source():
    a = dict(p for s in toy.SPLITS for p in toy.generate(size=2000, seed=1)[s])
    b = dict(p for s in toy.SPLITS for p in toy.generate(size=2000, seed=2)[s])
    common = a.keys() & b.keys()
    assert common  # short sentences recur across seeds
    assert all(a[en] == b[en] for en in common)


def test_sentence_shape(pairs):
    for en, pt in pairs:
        for s in (en, pt):
            assert s.endswith(".") and not s.endswith("..")
            assert s[0].isupper()
            assert "\n" not in s and "  " not in s
            assert 4 <= len(s.split()) <= 14


def test_adjective_follows_noun_and_agrees(pairs):
    seen = set()
    for en, pt in pairs:
        en_words = words(en.lower())
        for first, second in zip(en_words, en_words[1:], strict=False):
            adj = ADJ_BY_EN.get(first)
            noun = NOUN_BY_EN.get(second) or NOUN_BY_EN_PL.get(second)
            if adj is None or noun is None:
                continue
            plural = second == noun.en_pl
            expected = f"{noun.pt_pl if plural else noun.pt} {adj.form(noun.gender, plural)}"
            assert re.search(rf"\b{expected}\b", pt), (en, pt, expected)
            seen.add((noun.gender, plural))
    assert seen == {("m", False), ("f", False), ("m", True), ("f", True)}


def test_feminine_plural_adjective_form(pairs):
    fem_pl = [n for n in toy.NOUNS if n.gender == "f"]
    en_pat = re.compile(rf"\bred ({'|'.join(n.en_pl for n in fem_pl)})\b")
    pt_pat = re.compile(rf"\b({'|'.join(n.pt_pl for n in fem_pl)}) vermelhas\b")
    hits = [(en, pt) for en, pt in pairs if en_pat.search(en)]
    assert hits
    for en, pt in hits:
        assert len(en_pat.findall(en)) == len(pt_pat.findall(pt)), (en, pt)


def test_fixed_examples_present_in_vocabulary():
    car = NOUN_BY_EN["car"]
    red = ADJ_BY_EN["red"]
    assert f"o {car.pt} {red.form(car.gender, False)}" == "o carro vermelho"
    assert ADJ_BY_EN["big"].form("f", True) == "grandes"
    assert NOUN_BY_EN["dog"].pt_pl == "cães"
    assert NOUN_BY_EN["flower"].pt_pl == "flores"
    assert NUMBER_BY_EN["two"] == ("dois", "duas")


def test_numbers_agree_in_gender(pairs):
    seen = set()
    for en, pt in pairs:
        en_words = words(en.lower())
        for i, w in enumerate(en_words[:-1]):
            if w not in NUMBER_BY_EN:
                continue
            j = i + 2 if en_words[i + 1] in ADJ_BY_EN else i + 1
            noun = NOUN_BY_EN.get(en_words[j]) or NOUN_BY_EN_PL[en_words[j]]
            plural = w != "one"
            assert en_words[j] == (noun.en_pl if plural else noun.en)
            num_pt = NUMBER_BY_EN[w][noun.gender == "f"]
            noun_pt = noun.pt_pl if plural else noun.pt
            assert re.search(rf"\b{num_pt} {noun_pt}\b", pt.lower()), (en, pt)
            seen.add((w, noun.gender))
    assert {("two", "m"), ("two", "f"), ("one", "m"), ("one", "f")} <= seen


def test_verb_agrees_with_subject_and_de_contracts(pairs):
    contractions = set()
    for en, pt in pairs:
        en_words = words(en)
        v_idx = next(i for i, w in enumerate(en_words) if w in VERB_BY_EN)
        verb, plural = VERB_BY_EN[en_words[v_idx]]
        subject_noun = en_words[v_idx - 1]
        assert (subject_noun in NOUN_BY_EN_PL) == plural, en
        pt_verb = verb.pt_pl if plural else verb.pt
        pt_words = words(pt)
        assert pt_verb in pt_words, (en, pt)
        after = pt_words[pt_words.index(pt_verb) + 1]
        if verb.takes_de:
            assert after in DE_FORMS, (en, pt)
            if en_words[v_idx + 1] == "the":
                contractions.add(after)
                assert after in {"do", "da", "dos", "das"}
        else:
            assert after not in DE_FORMS, (en, pt)
        assert not re.search(r"\bde (o|a|os|as|este|esta|estes|estas)\b", pt), pt
    assert contractions == {"do", "da", "dos", "das"}


def test_specific_verb_forms(pairs):
    for en, pt in pairs:
        if " sees " in en:
            assert " vê " in pt
        if " see " in en:
            assert " veem " in pt
        if " has " in en:
            assert " tem " in pt
        if " have " in en:
            assert " têm " in pt


def test_dates(pairs):
    n_dates = 0
    date_en = re.compile(r" on ([A-Z][a-z]+) (\d{1,2}), (\d{4})\.$")
    for en, pt in pairs:
        m = date_en.search(en)
        if m is None:
            assert " em " not in pt and not re.search(r"\d", en + pt)
            continue
        n_dates += 1
        month, day, year = MONTH_BY_EN[m.group(1)], int(m.group(2)), int(m.group(3))
        assert toy.YEAR_RANGE[0] <= year <= toy.YEAR_RANGE[1]
        month_no = toy.MONTHS.index(month) + 1
        assert 1 <= day <= calendar.monthrange(year, month_no)[1]
        assert pt.endswith(f" em {day} de {month.pt} de {year}."), (en, pt)
    assert 0.2 * len(pairs) < n_dates < 0.5 * len(pairs)


def test_write_corpus(tmp_path: Path):
    out = tmp_path / "nested" / "toy"
    counts = toy.write_corpus(out, size=120, seed=5)
    expected = toy.generate(size=120, seed=5)
    assert counts == {"train": 120, "valid": 50, "test": 50}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{lang}" for s in toy.SPLITS for lang in ("en", "pt")
    )
    for split in toy.SPLITS:
        raw_en = (out / f"{split}.en").read_bytes()
        raw_pt = (out / f"{split}.pt").read_bytes()
        assert b"\r" not in raw_en + raw_pt
        assert raw_en.endswith(b"\n") and raw_pt.endswith(b"\n")
        en_lines = raw_en.decode("utf-8").splitlines()
        pt_lines = raw_pt.decode("utf-8").splitlines()
        assert len(en_lines) == len(pt_lines) == counts[split]
        assert list(zip(en_lines, pt_lines, strict=True)) == expected[split]


def test_write_corpus_replaces_existing_files_without_leftovers(tmp_path: Path):
    (tmp_path / "train.en").write_text("stale\n" * 1000, encoding="utf-8")
    toy.write_corpus(tmp_path, size=60, seed=2)
    toy.write_corpus(tmp_path, size=60, seed=2)  # second run must also leave no temp files
    assert len((tmp_path / "train.en").read_text(encoding="utf-8").splitlines()) == 60
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in tmp_path.iterdir())
    assert len(list(tmp_path.iterdir())) == 6


def test_describe_names_every_word_the_corpus_uses():
    """What `nmt data toy --describe` prints is the whole English vocabulary of the corpus
    (numbers of days and years aside), so a user knows what the demo model can translate."""
    import re

    text = toy.describe()
    described = set(re.findall(r"[a-z]+", text.lower()))
    corpus = toy.generate(size=400, seed=3)
    words = {w for en, _ in corpus["train"] for w in re.findall(r"[a-z]+", en.lower())}
    months = {m.en.lower() for m in toy.MONTHS}
    assert words - months - described == set()
    assert "january" in described


def test_data_toy_describe_prints_and_writes_nothing(tmp_path, monkeypatch):
    from conftest import nmt, ok, user_error

    monkeypatch.chdir(tmp_path)
    r = nmt("data", "toy", "--describe")
    ok(r)
    assert r.stdout.startswith("Every sentence: SUBJECT VERB OBJECT")
    assert list(tmp_path.iterdir()) == []
    user_error(nmt("data", "toy"), "--out")


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/dev/full", "/proc/nmt-toy"])
def test_an_output_that_cannot_be_a_folder_is_one_line(tmp_path, where):
    from conftest import nmt, user_error

    (tmp_path / "a-file").write_text("x")
    out = where if where.startswith("/") else tmp_path / where
    user_error(nmt("data", "toy", "-o", out, "--size", "100"), str(out))
    assert (tmp_path / "a-file").read_text() == "x"
    assert not Path("/dev/full").exists() or Path("/dev/full").is_char_device()
