"""A seeded synthetic knowledge world: people, the facts a passage states about them, and the facts those
imply through general knowledge (a city's country, a year's century, a trade's workplace, ...).

Each context asks for both kinds, as sentences to complete. Fine-tuning on the passage alone teaches the
stated facts; an implied fact needs a second, general-knowledge hop that a small model does not take from
newly trained facts. A self-edit can take that hop in context by writing the implication out, which is what
SEAL's prompt asks for, so how much a self-edit helps depends on what the policy writes.

Records follow the SEAL reference schema ({"title", "context", "questions": [{"question", "answer"}]}), so
the knowledge task treats them exactly like SQuAD. Names combine a first and a last name from fixed lists
(one token each); the combinations are split into two disjoint populations, one for the people whose facts
the tiny model memorises in pretraining and one for task worlds, so no task person's facts are known to
the model while the words of their name are.
"""

import random
from dataclasses import dataclass

from seal_dist.config import UserError

FIRST_NAMES = (
    "Anna Bruno Clara Dario Elena Felix Greta Hugo Ines Jonas Karla Leon Mira Nils Olga Pavel Rosa Simon Tilda"
    " Viktor Wanda Yusuf Zara Adam Bella Cyril Dora Emil Flora Georg Hana Ivan Julia Kasper Lena Marek Nora"
    " Oskar Petra Rafael Sofia Tomas Ursula Vera Walter Xenia Yara Zeno"
).split()
LAST_NAMES = (
    "Abbott Berger Castell Dalton Ekberg Fischer Garnier Holm Ivers Jansen Keller Lindqvist Moreau Novak Ortega"
    " Petrov Quinn Rossi Sandoval Tanaka Ulrich Varga Weber Xavier Young Zeller Alvarez Brandt Costa Duval"
    " Engel Falk Gruber Hartmann Iverson Jovanovic Kovacs Larsen Meyer Nakamura Olsen Pereira Ramos Schulz"
    " Torres Vidal Wagner Yilmaz"
).split()
PRETRAINING, TASK = 0, 1  # the two disjoint populations of names


@dataclass(frozen=True)
class Attribute:
    """A stated fact and the fact it implies through a general-knowledge map."""

    key: str
    implies: dict[str, str]  # stated value -> implied value (years are mapped by `century`)
    statements: tuple[str, ...]  # ways a passage states the fact; fields {name}, {value}
    canonical: str  # the fact as a sentence ending in its value; its beginning is the question
    implied_canonical: str  # the same for the implied fact
    general: str  # the general knowledge linking the two; fields {value}, {implied}


def century(year: str) -> str:
    n = (int(year) - 1) // 100 + 1
    return f"{n}th century"


_CITIES = {
    "France": "Paris Lyon Marseille", "Italy": "Rome Milan Naples", "Spain": "Madrid Seville Valencia",
    "Germany": "Berlin Hamburg Munich", "Japan": "Tokyo Osaka Kyoto", "Canada": "Toronto Montreal Vancouver",
    "Egypt": "Cairo Alexandria Luxor", "Brazil": "Recife Salvador Curitiba",
}
_TRADES = {
    "baker": "bakery", "brewer": "brewery", "astronomer": "observatory", "sailor": "harbour",
    "surgeon": "hospital", "librarian": "library", "teacher": "school", "miner": "mine", "farmer": "farm",
    "judge": "courthouse", "chemist": "laboratory", "blacksmith": "forge", "monk": "monastery",
    "actor": "theatre", "banker": "bank", "gardener": "park",
}
_INSTRUMENTS = {
    "string": "violin cello harp", "wind": "flute oboe trumpet", "percussion": "drum xylophone tambourine",
    "keyboard": "piano organ harpsichord",
}
_PETS = {"bird": "owl parrot falcon", "mammal": "fox otter hare", "reptile": "tortoise lizard gecko",
         "fish": "goldfish carp trout"}


def _inverse(groups: dict[str, str]) -> dict[str, str]:
    return {member: group for group, members in groups.items() for member in members.split()}


# A question is a canonical sentence cut before its value (a cloze): the tiny model recalls a fact in the
# form it was trained on and hardly from a paraphrase, so a self-edit helps when it writes facts, stated or
# implied, as such sentences. Passages state each fact in one of several phrasings, in each of which the
# value follows the same words as in the canonical sentence ("city of", "year", "as a", "played the", "pet"):
# a small model reads a value by finding those words in the passage and copying what follows them.
# An implied fact is asked as "The <property> of <name> was ...", a beginning that no stated fact shares: with
# "{name} worked at the {value}." the tiny model, trained on a self-edit that wrote both "Kim worked as a
# baker." and "Kim worked at the bakery.", completed "Kim worked at the" right 5% of the time (the pet's
# implication, asked in this form, 100%), which capped what any self-edit could teach.
ATTRIBUTES = (
    Attribute(
        "birthplace", _inverse(_CITIES),
        ("{name} was born in the city of {value}.", "The city of {value} is where {name} was born.",
         "Records place the birth of {name} in the city of {value}."),
        "{name} was born in the city of {value}.",
        "The home country of {name} was {value}.",
        "{value} is a city in {implied}.",
    ),
    Attribute(
        "year", {},
        ("{name} was born in the year {value}.", "The year {value} saw {name} born.",
         "In the year {value}, {name} was born."),
        "{name} was born in the year {value}.",
        "The century of {name} was the {value}.",
        "The year {value} is in the {implied}.",
    ),
    Attribute(
        "trade", _TRADES,
        ("{name} worked as a {value}.", "As a {value}, {name} worked hard.", "{name} was trained as a {value}."),
        "{name} worked as a {value}.",
        "The workplace of {name} was the {value}.",
        "A {value} works at a {implied}.",
    ),
    Attribute(
        "instrument", _inverse(_INSTRUMENTS),
        ("{name} played the {value}.", "On the {value}, {name} played every evening.",
         "{name} played the {value} every evening."),
        "{name} played the {value}.",
        "The instrument family of {name} was {value}.",
        "The {value} is a {implied} instrument.",
    ),
    Attribute(
        "pet", _inverse(_PETS),
        ("{name} kept a pet {value}.", "A pet {value} lived with {name}.",
         "The pet {value} was the companion of {name}."),
        "{name} kept a pet {value}.",
        "The pet of {name} was a {value}.",
        "The {value} is a {implied}.",
    ),
)


def implied(attribute: Attribute, value: str) -> str:
    return century(value) if attribute.key == "year" else attribute.implies[value]


def values(attribute: Attribute) -> list[str]:
    if attribute.key == "year":
        return [str(y) for y in range(1601, 2000) if y % 100]  # no century boundaries
    return sorted(attribute.implies)


@dataclass(frozen=True)
class Entity:
    name: str
    facts: tuple[tuple[Attribute, str], ...]  # (attribute, stated value)


def population_names(population: int) -> list[str]:
    """The full names of one population (PRETRAINING or TASK)."""
    return [f"{first} {last}" for i, first in enumerate(FIRST_NAMES) for j, last in enumerate(LAST_NAMES)
            if (i + j) % 2 == population]


def attributes_named(keys: list[str], setting: str) -> tuple[Attribute, ...]:
    """The attributes with these keys, in ATTRIBUTES' order; `setting` names the config key they come from."""
    known = [a.key for a in ATTRIBUTES]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        raise UserError(f"{setting} must be a non-empty subset of {known}, got {list(keys)}")
    return tuple(a for a in ATTRIBUTES if a.key in keys)


def make_entities(seed: int, count: int, facts_per_passage: int, population: int,
                  distinct: bool = True, attributes: tuple[Attribute, ...] = ATTRIBUTES) -> list[Entity]:
    """`count` people named from `population` (PRETRAINING or TASK), each with `facts_per_passage` stated
    facts about different `attributes`; with `distinct`, no two share a name."""
    if not 1 <= facts_per_passage <= len(attributes):
        raise UserError(f"facts_per_passage must be in 1..{len(attributes)} (the world's attributes), "
                         f"got {facts_per_passage}")
    names = population_names(population)
    if distinct and count > len(names):
        raise UserError(f"the world has {len(names)} names per population, {count} people were asked for")
    rng = random.Random(seed)
    chosen = rng.sample(names, count) if distinct else rng.choices(names, k=count)
    return [Entity(name, tuple((a, rng.choice(values(a))) for a in rng.sample(attributes, facts_per_passage)))
            for name in chosen]


def passage(entity: Entity, rng: random.Random) -> str:
    """The facts in their (random) order, each in a random phrasing."""
    return " ".join(rng.choice(a.statements).format(name=entity.name, value=v) for a, v in entity.facts)


def cloze(sentence: str, value: str) -> str:
    """The question a canonical sentence answers: the sentence cut before its value."""
    if not sentence.endswith(f" {value}."):
        raise ValueError(f"{sentence!r} does not end in its value {value!r}")
    return sentence[: -len(value) - 2]


def questions(entity: Entity) -> list[dict]:
    """Per fact, a question for the stated value and one for the implied value."""
    found = []
    for a, v in entity.facts:
        found.append({"question": cloze(a.canonical.format(name=entity.name, value=v), v), "answer": v})
        i = implied(a, v)
        found.append({"question": cloze(a.implied_canonical.format(name=entity.name, value=i), i), "answer": i})
    return found


def record(entity: Entity, rng: random.Random) -> dict:
    """One context in the SEAL reference schema."""
    return {"title": entity.name, "context": passage(entity, rng), "questions": questions(entity)}


def stated_facts(entity: Entity) -> list[str]:
    return [a.canonical.format(name=entity.name, value=v) for a, v in entity.facts]


def implied_facts(entity: Entity) -> list[str]:
    return [a.implied_canonical.format(name=entity.name, value=implied(a, v)) for a, v in entity.facts]


def general_knowledge(attributes: tuple[Attribute, ...] = ATTRIBUTES) -> list[str]:
    """Every general-knowledge sentence about these attributes: one per city, year, trade, instrument, pet."""
    return [a.general.format(value=v, implied=implied(a, v)) for a in attributes for v in values(a)]


def make_split(seed: int, num_train: int, num_heldout: int, facts_per_passage: int,
               attributes: tuple[Attribute, ...] = ATTRIBUTES) -> dict[str, list[dict]]:
    """Train and held-out contexts over disjoint people of one seeded task world."""
    entities = make_entities(seed, num_train + num_heldout, facts_per_passage, TASK, attributes=attributes)
    rng = random.Random(seed + 1)
    records = [record(e, rng) for e in entities]
    return {"train": records[:num_train], "heldout": records[num_train:]}
