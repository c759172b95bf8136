"""Generate the built-in demo corpora (data/demo/<task>/) from small seeded grammars.

Run ``python -m attn.data.make_demo`` to rewrite them; the output is byte-identical for
the same seed. The corpora are small and regular on purpose, so that a tiny model learns
each task in about a minute on a laptop CPU:

- translate: English -> German phrase grammar with gender, case (nominative, accusative,
  dative after prepositions), adjective endings, plurals and verb-second word order.
- summarize: short reports and dialogues with distractor sentences -> a one-line summary
  of the key event (who did what, where, when).
- sentiment: reviews with negation and contrast ("..., but ...") where the last clause
  decides, so word counts alone are not enough.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611
SIZES = {"translate": (6000, 300), "summarize": (4000, 200), "sentiment": (4000, 300)}

# --- translate -------------------------------------------------------------------------

M, F, N, PL = "m", "f", "n", "pl"
NOM, ACC, DAT = 0, 1, 2


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    de_dat_pl: str
    gender: str


NOUNS = [
    Noun("dog", "dogs", "Hund", "Hunde", "Hunden", M),
    Noun("man", "men", "Mann", "Männer", "Männern", M),
    Noun("bird", "birds", "Vogel", "Vögel", "Vögeln", M),
    Noun("table", "tables", "Tisch", "Tische", "Tischen", M),
    Noun("ball", "balls", "Ball", "Bälle", "Bällen", M),
    Noun("chair", "chairs", "Stuhl", "Stühle", "Stühlen", M),
    Noun("apple", "apples", "Apfel", "Äpfel", "Äpfeln", M),
    Noun("tree", "trees", "Baum", "Bäume", "Bäumen", M),
    Noun("teacher", "teachers", "Lehrer", "Lehrer", "Lehrern", M),
    Noun("cook", "cooks", "Koch", "Köche", "Köchen", M),
    Noun("fish", "fish", "Fisch", "Fische", "Fischen", M),
    Noun("letter", "letters", "Brief", "Briefe", "Briefen", M),
    Noun("hat", "hats", "Hut", "Hüte", "Hüten", M),
    Noun("doctor", "doctors", "Arzt", "Ärzte", "Ärzten", M),
    Noun("woman", "women", "Frau", "Frauen", "Frauen", F),
    Noun("cat", "cats", "Katze", "Katzen", "Katzen", F),
    Noun("flower", "flowers", "Blume", "Blumen", "Blumen", F),
    Noun("lamp", "lamps", "Lampe", "Lampen", "Lampen", F),
    Noun("mouse", "mice", "Maus", "Mäuse", "Mäusen", F),
    Noun("cow", "cows", "Kuh", "Kühe", "Kühen", F),
    Noun("newspaper", "newspapers", "Zeitung", "Zeitungen", "Zeitungen", F),
    Noun("bottle", "bottles", "Flasche", "Flaschen", "Flaschen", F),
    Noun("bag", "bags", "Tasche", "Taschen", "Taschen", F),
    Noun("child", "children", "Kind", "Kinder", "Kindern", N),
    Noun("girl", "girls", "Mädchen", "Mädchen", "Mädchen", N),
    Noun("book", "books", "Buch", "Bücher", "Büchern", N),
    Noun("horse", "horses", "Pferd", "Pferde", "Pferden", N),
    Noun("car", "cars", "Auto", "Autos", "Autos", N),
    Noun("picture", "pictures", "Bild", "Bilder", "Bildern", N),
    Noun("glass", "glasses", "Glas", "Gläser", "Gläsern", N),
    Noun("boat", "boats", "Boot", "Boote", "Booten", N),
]
ANIMATE = {"dog", "man", "bird", "teacher", "cook", "doctor", "woman", "cat", "mouse"} | {
    "cow",
    "child",
    "girl",
    "horse",
}

# Places for prepositional phrases: (English noun, German noun, gender).
PLACES = [
    ("garden", "Garten", M),
    ("park", "Park", M),
    ("forest", "Wald", M),
    ("street", "Straße", F),
    ("kitchen", "Küche", F),
    ("school", "Schule", F),
    ("house", "Haus", N),
    ("village", "Dorf", N),
    ("room", "Zimmer", N),
]
# Prepositions taking the dative for a location; "in" + "dem" contracts to "im".
PREPOSITIONS = [("in", "in"), ("near", "bei"), ("behind", "hinter"), ("next to", "neben")]
CONTRACTIONS = {("in", "dem"): "im", ("bei", "dem"): "beim"}

ADJECTIVES = [
    ("big", "groß"),
    ("small", "klein"),
    ("red", "rot"),
    ("old", "alt"),
    ("young", "jung"),
    ("new", "neu"),
    ("happy", "glücklich"),
    ("tired", "müde"),
    ("hungry", "hungrig"),
    ("black", "schwarz"),
    ("white", "weiß"),
    ("green", "grün"),
    ("blue", "blau"),
    ("beautiful", "schön"),
    ("fast", "schnell"),
    ("quiet", "ruhig"),
    ("funny", "lustig"),
    ("friendly", "freundlich"),
]

# (English base, English 3sg, German 3sg, German 3pl)
TRANSITIVE = [
    ("see", "sees", "sieht", "sehen"),
    ("like", "likes", "mag", "mögen"),
    ("find", "finds", "findet", "finden"),
    ("buy", "buys", "kauft", "kaufen"),
    ("carry", "carries", "trägt", "tragen"),
    ("hold", "holds", "hält", "halten"),
    ("paint", "paints", "malt", "malen"),
    ("have", "has", "hat", "haben"),
    ("visit", "visits", "besucht", "besuchen"),
    ("draw", "draws", "zeichnet", "zeichnen"),
]
INTRANSITIVE = [
    ("sleep", "sleeps", "schläft", "schlafen"),
    ("run", "runs", "läuft", "laufen"),
    ("sit", "sits", "sitzt", "sitzen"),
    ("wait", "waits", "wartet", "warten"),
    ("play", "plays", "spielt", "spielen"),
    ("laugh", "laughs", "lacht", "lachen"),
    ("sing", "sings", "singt", "singen"),
    ("eat", "eats", "isst", "essen"),
]
ADVERBS = [("today", "heute"), ("now", "jetzt"), ("tomorrow", "morgen"), ("often", "oft")]

# German determiner forms by gender and case.
DER = {M: ("der", "den", "dem"), F: ("die", "die", "der"), N: ("das", "das", "dem")}
DER_PL = ("die", "die", "den")
DIESER = {
    M: ("dieser", "diesen", "diesem"),
    F: ("diese", "diese", "dieser"),
    N: ("dieses", "dieses", "diesem"),
}
DIESER_PL = ("diese", "diese", "diesen")
EIN_ENDINGS = {M: ("", "en", "em"), F: ("e", "e", "er"), N: ("", "", "em")}
EIN_PL_ENDINGS = ("e", "e", "en")

# English determiner -> (German kind, stem); "ein"-words share the endings of "ein".
DETERMINERS = [
    ("the", "der", ""),
    ("this", "dieser", ""),
    ("a", "ein", "ein"),
    ("my", "ein", "mein"),
    ("his", "ein", "sein"),
    ("her", "ein", "ihr"),
]
NUMBERS = [("two", "zwei"), ("three", "drei"), ("many", "viele")]


def _adjective_ending(kind: str, gender: str, case: int) -> str:
    """The ending of an attributive adjective after a determiner of ``kind``."""
    if gender == PL:
        # Plural: weak/mixed after a determiner, strong (-e/-e/-en) without one.
        return ("e", "e", "en")[case] if kind == "none" else "en"
    if case == DAT:
        return "en"
    if kind in ("der", "dieser"):
        return "en" if (gender, case) == (M, ACC) else "e"
    # ein-words: the adjective carries the gender where the determiner does not.
    return {(M, NOM): "er", (M, ACC): "en", (F, NOM): "e", (F, ACC): "e"}.get((gender, case), "es")


def _inflect(stem: str, ending: str) -> str:
    # "müde" + "en" -> "müden", not "müdeen".
    return stem + (ending[1:] if stem.endswith("e") and ending.startswith("e") else ending)


def _german_determiner(kind: str, stem: str, gender: str, case: int) -> str:
    if kind == "der":
        return DER_PL[case] if gender == PL else DER[gender][case]
    if kind == "dieser":
        return DIESER_PL[case] if gender == PL else DIESER[gender][case]
    return stem + (EIN_PL_ENDINGS[case] if gender == PL else EIN_ENDINGS[gender][case])


def _a_or_an(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(
    rng: random.Random, nouns: Sequence[Noun], case: int, *, plural: bool | None = None
) -> tuple[str, str, bool]:
    """A random noun phrase: (English, German, is plural)."""
    noun = rng.choice(nouns)
    if plural is None:
        plural = rng.random() < 0.3
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.6 else None
    gender = PL if plural else noun.gender
    if plural:
        choice = rng.randrange(4)
        if choice == 0:
            en_det, kind, stem, de_det = "", "none", "", ""
        elif choice == 1:
            en_det, de_det = rng.choice(NUMBERS)
            kind, stem = "none", ""
        else:
            en_det, kind, stem = rng.choice([d for d in DETERMINERS if d[0] not in ("a", "this")])
            de_det = _german_determiner(kind, stem, gender, case)
        en_noun = noun.en_pl
        de_noun = noun.de_dat_pl if case == DAT else noun.de_pl
    else:
        en_det, kind, stem = rng.choice(DETERMINERS)
        de_det = _german_determiner(kind, stem, gender, case)
        en_noun, de_noun = noun.en, noun.de
    en_words = [adjective[0]] if adjective else []
    de_words = [_inflect(adjective[1], _adjective_ending(kind, gender, case))] if adjective else []
    if en_det == "a":
        en_det = _a_or_an((en_words or [en_noun])[0])
    en = " ".join(w for w in (en_det, *en_words, en_noun) if w)
    de = " ".join(w for w in (de_det, *de_words, de_noun) if w)
    return en, de, plural


def _place_phrase(rng: random.Random) -> tuple[str, str]:
    en_prep, de_prep = rng.choice(PREPOSITIONS)
    en_noun, de_noun, gender = rng.choice(PLACES)
    en_det, kind, stem = rng.choice([d for d in DETERMINERS if d[0] in ("the", "this", "my")])
    de_det = _german_determiner(kind, stem, gender, DAT)
    de_head = CONTRACTIONS.get((de_prep, de_det))
    de = f"{de_head} {de_noun}" if de_head else f"{de_prep} {de_det} {de_noun}"
    return f"{en_prep} {en_det} {en_noun}", de


def _sentence_case(text: str) -> str:
    return text[0].upper() + text[1:]


def _translation_pair(rng: random.Random) -> tuple[str, str]:
    animate = [n for n in NOUNS if n.en in ANIMATE]
    subj_en, subj_de, plural = _noun_phrase(rng, animate, NOM)
    shape = rng.randrange(6)
    place = _place_phrase(rng) if rng.random() < 0.5 else None
    if shape <= 1:
        base, en3, de3, de_pl = rng.choice(TRANSITIVE)
        obj_en, obj_de, _ = _noun_phrase(rng, NOUNS, ACC)
        en_verb, de_verb = (base, de_pl) if plural else (en3, de3)
        en_rest, de_rest = f"{en_verb} {obj_en}", f"{obj_de}"
    elif shape == 2:
        base, en3, de3, de_pl = rng.choice(INTRANSITIVE)
        en_verb, de_verb = (base, de_pl) if plural else (en3, de3)
        en_rest, de_rest = en_verb, ""
        place = place or _place_phrase(rng)
    elif shape == 3:
        adjective = rng.choice(ADJECTIVES)
        en_verb, de_verb = ("are", "sind") if plural else ("is", "ist")
        en_rest, de_rest = f"{en_verb} {adjective[0]}", adjective[1]
        place = None
    elif shape == 4:
        # Negation: German puts "nicht" after a definite object, at the end.
        base, en3, de3, de_pl = rng.choice(TRANSITIVE + INTRANSITIVE)
        en_aux, de_verb = ("do", de_pl) if plural else ("does", de3)
        if (base, en3, de3, de_pl) in TRANSITIVE:
            noun = rng.choice(NOUNS)
            obj_en = f"the {noun.en}"
            obj_de = f"{DER[noun.gender][ACC]} {noun.de}"
            en_rest, de_rest = f"{en_aux} not {base} {obj_en}", f"{obj_de} nicht"
        else:
            en_rest, de_rest = f"{en_aux} not {base}", "nicht"
        place = None
    else:
        # Verb-second: an adverb first moves the verb before the subject.
        adverb_en, adverb_de = rng.choice(ADVERBS)
        base, en3, de3, de_pl = rng.choice(TRANSITIVE)
        obj_en, obj_de, _ = _noun_phrase(rng, NOUNS, ACC)
        en_verb, de_verb = (base, de_pl) if plural else (en3, de3)
        en_place, de_place = place if place else ("", "")
        en = " ".join(w for w in (adverb_en, subj_en, en_verb, obj_en, en_place) if w)
        de = " ".join(w for w in (adverb_de, de_verb, subj_de, obj_de, de_place) if w)
        return _sentence_case(en) + ".", _sentence_case(de) + "."
    en_place, de_place = place if place else ("", "")
    en = " ".join(w for w in (subj_en, en_rest, en_place) if w)
    de = " ".join(w for w in (subj_de, de_verb, de_rest, de_place) if w)
    return _sentence_case(en) + ".", _sentence_case(de) + "."


# --- summarize -------------------------------------------------------------------------

PEOPLE = [
    ("Anna", "she"),
    ("Maria", "she"),
    ("Lena", "she"),
    ("Sofia", "she"),
    ("Emma", "she"),
    ("Clara", "she"),
    ("Tom", "he"),
    ("Ben", "he"),
    ("David", "he"),
    ("Paul", "he"),
    ("Lukas", "he"),
    ("Omar", "he"),
]
ACTIONS = [
    ("repaired", "the bicycle"),
    ("painted", "the fence"),
    ("cleaned", "the kitchen"),
    ("sold", "the old car"),
    ("bought", "a new laptop"),
    ("found", "the lost keys"),
    ("wrote", "the report"),
    ("baked", "a birthday cake"),
    ("fixed", "the printer"),
    ("planted", "three apple trees"),
    ("booked", "the train tickets"),
    ("moved", "the piano"),
    ("returned", "the library books"),
    ("organized", "the team meeting"),
]
SUMMARY_PLACES = [
    "in the garage",
    "at the office",
    "in the garden",
    "at the station",
    "at the school",
    "in the city centre",
    "at the market",
    "at home",
    "in the library",
    "at the hospital",
]
DAYS = ["on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday"]
DAYS += ["on Sunday", "yesterday", "last week", "this morning"]
WEATHER = ["cold", "warm", "rainy", "sunny", "windy", "grey"]
THINGS = [("coffee", "too strong"), ("music", "too loud"), ("room", "too small")]
THINGS += [("film", "boring"), ("soup", "delicious"), ("bus", "late")]


def _time_sentence(day: str) -> str:
    if day.startswith("on "):
        return f"It was {day.removeprefix('on ')}."
    return f"That happened {day}."


def _distractors(rng: random.Random, others: list[tuple[str, str]]) -> list[str]:
    other = rng.choice(others)[0]
    thing, quality = rng.choice(THINGS)
    pool = [
        f"The weather was {rng.choice(WEATHER)}.",
        f"{other} thought the {thing} was {quality}.",
        f"{other} was not there.",
        f"{other} had a cup of tea.",
        "Everyone was very busy.",
    ]
    return rng.sample(pool, rng.randint(1, 2))


def _summary_pair(rng: random.Random) -> tuple[str, str]:
    (name, pronoun), (friend, _) = rng.sample(PEOPLE, 2)
    past, obj = rng.choice(ACTIONS)
    place = rng.choice(SUMMARY_PLACES)
    day = rng.choice(DAYS)
    summary = f"{name} {past} {obj} {place} {day}."
    others = [p for p in PEOPLE if p[0] != name]
    if rng.random() < 0.5:
        # A report: the facts are spread over sentences and mixed with distractors.
        if rng.random() < 0.5:
            facts = [f"{_sentence_case(day)}, {name} {past} {obj}."]
        else:
            facts = [f"{name} {past} {obj}.", _time_sentence(day)]
        facts.append(
            rng.choice(
                [
                    f"{_sentence_case(pronoun)} did it {place}.",
                    f"It happened {place}.",
                    f"{_sentence_case(pronoun)} was {place} at the time.",
                ]
            )
        )
        sentences = _distractors(rng, others)
        insert_at = rng.randint(0, 1)
        sentences[insert_at:insert_at] = facts
        source = " ".join(sentences[:5])
    else:
        # A dialogue: the key event is told in the first person and must be rewritten.
        turns = [
            f"{friend}: What did you do {day}?",
            f"{name}: I {past} {obj}.",
            f"{friend}: Where?",
            f"{name}: {_sentence_case(place)}.",
        ]
        if rng.random() < 0.5:
            thing, quality = rng.choice(THINGS)
            # At the start or the end, so that the question and answer stay together.
            turns.insert(rng.choice((0, 4)), f"{friend}: The {thing} was {quality}.")
        source = " ".join(turns)
    return source, summary


# --- sentiment -------------------------------------------------------------------------

SUBJECTS = {
    "movie": ["plot", "acting", "music", "ending", "story", "dialogue", "camera work"],
    "phone": ["battery", "screen", "price", "design", "camera", "sound", "delivery"],
    "book": ["plot", "hero", "writing", "ending", "cover", "price", "story"],
    "restaurant": ["food", "service", "price", "music", "dessert", "staff", "soup"],
}
POSITIVE = ["good", "great", "excellent", "wonderful", "lovely", "brilliant", "fun"]
NEGATIVE = ["bad", "terrible", "awful", "boring", "poor", "dull", "disappointing"]
VERBS = {True: ["loved", "enjoyed", "liked"], False: ["hated", "disliked"]}
BASE_VERBS = {True: ["like", "enjoy", "love"], False: ["hate", "mind"]}
ADVERB_OPTIONS = ["", "", "really ", "very ", "quite "]


def _clause(rng: random.Random, aspect: str, positive: bool) -> str:
    """A clause with the given polarity, sometimes expressed by negating its opposite."""
    shape = rng.randrange(4)
    if shape == 0:
        adjective = rng.choice(POSITIVE if positive else NEGATIVE)
        return f"the {aspect} was {rng.choice(ADVERB_OPTIONS)}{adjective}"
    if shape == 1:
        adjective = rng.choice(NEGATIVE if positive else POSITIVE)
        return f"the {aspect} was not {adjective}"
    if shape == 2:
        return f"I {rng.choice(VERBS[positive])} the {aspect}"
    return f"I did not {rng.choice(BASE_VERBS[not positive])} the {aspect}"


def _review(rng: random.Random, positive: bool) -> str:
    """A review whose label is decided by its main (last) clause."""
    kind = rng.choice(sorted(SUBJECTS))
    first, second = rng.sample(SUBJECTS[kind], 2)
    shape = rng.randrange(6)
    if shape == 0:
        text = f"{_clause(rng, first, positive)}."
    elif shape == 1:
        text = f"{_clause(rng, first, positive)} and {_clause(rng, second, positive)}."
    elif shape in (2, 3):
        # The contrast clause comes last and decides; both orders occur for both labels.
        text = f"{_clause(rng, first, not positive)}, but {_clause(rng, second, positive)}."
    elif shape == 4:
        text = f"although {_clause(rng, first, not positive)}, {_clause(rng, second, positive)}."
    else:
        # A verdict sentence decides; the sentence before it may agree or not.
        verdict = "I would recommend this" if positive else "I would not recommend this"
        if rng.random() < 0.5:
            text = f"{_clause(rng, first, positive)}. {verdict} {kind}."
        else:
            text = f"{_clause(rng, first, not positive)}. Still, {verdict} {kind}."
    return _sentence_case(text)


def _sentiment_pair(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    return _review(rng, positive), "positive" if positive else "negative"


# --- writing ---------------------------------------------------------------------------


def _unique_pairs(
    rng: random.Random, make: Callable[[random.Random], tuple[str, str]], n: int
) -> list[tuple[str, str]]:
    """``n`` distinct pairs (distinct sources), so validation never repeats training."""
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        src, tgt = make(rng)
        if src not in seen:
            seen.add(src)
            pairs.append((src, tgt))
    return pairs


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def generate(out: Path, seed: int = SEED) -> None:
    """Write all three demo corpora under ``out/<task>/``."""
    makers = {
        "translate": _translation_pair,
        "summarize": _summary_pair,
        "sentiment": _sentiment_pair,
    }
    for task, make in makers.items():
        n_train, n_val = SIZES[task]
        pairs = _unique_pairs(random.Random(f"{seed}-{task}"), make, n_train + n_val)
        splits = {"train": pairs[:n_train], "val": pairs[n_train:]}
        directory = out / task
        directory.mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            if task == "translate":
                _write(directory / f"{split}.en", [s for s, _ in rows])
                _write(directory / f"{split}.de", [t for _, t in rows])
            elif task == "summarize":
                _write(directory / f"{split}.src", [s for s, _ in rows])
                _write(directory / f"{split}.tgt", [t for _, t in rows])
            else:
                _write(directory / f"{split}.tsv", ["text\tlabel"] + [f"{s}\t{t}" for s, t in rows])


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m attn.data.make_demo [--out DIR] [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    generate(args.out, args.seed)


if __name__ == "__main__":
    main()
