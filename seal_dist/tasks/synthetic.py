"""A seeded synthetic knowledge world: invented people, their facts, passages and questions.

Records follow the SEAL reference schema ({"title", "context", "questions": [{"question", "answer"}]}) so the
knowledge task treats them exactly like SQuAD. Names are built from syllables, so entities of different seeds
are new to a model that was pretrained on others, while their tokens are not.
"""

import random
from dataclasses import dataclass

_SYLLABLES = (
    "ka ri to mel van dor el sa bin tor ash qu ny lo fen gar is ul mo pra zel den wy tha cor"
    " lin ves ro an bel dra kir on mur sel ta vi nor hal ym ce jo rak"
).split()
_OCCUPATIONS = (
    "baker carpenter astronomer weaver sailor painter glassmaker cartographer potter blacksmith"
    " surgeon botanist architect jeweler librarian tailor mason brewer violinist engineer"
    " chemist judge merchant poet sculptor miner farmer physician teacher shipwright"
).split()
_INSTRUMENTS = "flute harp cello drum lute trumpet violin organ banjo oboe zither piano".split()
_COLORS = "red blue green amber violet silver golden crimson teal ivory black orange".split()
_ANIMALS = "owl fox heron otter falcon badger lynx raven tortoise hare stag wolf".split()


@dataclass(frozen=True)
class Attribute:
    key: str
    statements: tuple[str, ...]  # ways a passage states the fact; fields {name}, {value}
    questions: tuple[str, ...]  # ways to ask for it; field {name}
    canonical: str  # the plain statement used by well-formed self-edits


# Passages state every fact value-first, while questions and the canonical statements of a good self-edit
# are name-first, so that restating the passage the way it is asked can matter (the reversal curse). In the
# tiny demo model, passage-only training still learns short answers (years) well: the gap this was meant to
# open is small so far.
_ATTRIBUTES = (
    Attribute(
        "birthplace",
        ("Born in {value}, {name} grew up near the river.", "The town of {value} is where {name} was born.",
         "{value} is the hometown of {name}."),
        ("Where was {name} born?", "In which town was {name} born?", "What is the birthplace of {name}?"),
        "{name} was born in {value}.",
    ),
    Attribute(
        "year",
        ("The year {value} saw the birth of {name}.", "In {value}, {name} was born.",
         "{value} was the year that {name} was born."),
        ("In what year was {name} born?", "When was {name} born?", "What is the birth year of {name}?"),
        "{name} was born in the year {value}.",
    ),
    Attribute(
        "occupation",
        ("A {value} by trade, {name} worked hard.", "As a {value}, {name} earned a living.",
         "The best {value} in the valley was {name}."),
        ("What was the occupation of {name}?", "What did {name} work as?", "What was the trade of {name}?"),
        "{name} was a {value}.",
    ),
    Attribute(
        "instrument",
        ("The {value} was the instrument of {name}.", "On the {value}, {name} played every evening.",
         "Playing the {value} was how {name} spent the evenings."),
        ("Which instrument did {name} play?", "What instrument did {name} play?",
         "What did {name} play every evening?"),
        "{name} played the {value}.",
    ),
    Attribute(
        "color",
        ("{value} was the favourite colour of {name}.", "In {value} clothes, {name} was easy to spot.",
         "The colour {value} was loved by {name}."),
        ("What was the favourite colour of {name}?", "Which colour did {name} like best?",
         "What colour did {name} prefer?"),
        "The favourite colour of {name} was {value}.",
    ),
    Attribute(
        "animal",
        ("A tame {value} lived with {name}.", "A pet {value} belonged to {name}.",
         "The {value} was the companion of {name}."),
        ("What pet did {name} keep?", "Which animal lived with {name}?", "What animal was the pet of {name}?"),
        "{name} kept a pet {value}.",
    ),
    Attribute(
        "mentor",
        ("{value} taught {name}.", "Under {value}, {name} studied as a youth.",
         "{value} was the teacher of {name}."),
        ("Who taught {name}?", "Who was the teacher of {name}?", "Under whom did {name} study?"),
        "The teacher of {name} was {value}.",
    ),
)


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables)).capitalize()


def _value(rng: random.Random, key: str) -> str:
    if key == "birthplace":
        return _word(rng, 3)
    if key == "year":
        return str(rng.randint(1650, 1950))
    if key == "occupation":
        return rng.choice(_OCCUPATIONS)
    if key == "instrument":
        return rng.choice(_INSTRUMENTS)
    if key == "color":
        return rng.choice(_COLORS)
    if key == "animal":
        return rng.choice(_ANIMALS)
    if key == "mentor":
        return f"{_word(rng, 2)} {_word(rng, 2)}"
    raise KeyError(key)


@dataclass(frozen=True)
class Entity:
    name: str
    facts: tuple[tuple[Attribute, str], ...]  # (attribute, value)


def make_entities(seed: int, count: int, facts_per_passage: int) -> list[Entity]:
    if not 1 <= facts_per_passage <= len(_ATTRIBUTES):
        raise ValueError(f"facts_per_passage must be in 1..{len(_ATTRIBUTES)}, got {facts_per_passage}")
    rng = random.Random(seed)
    entities, names = [], set()
    while len(entities) < count:
        name = f"{_word(rng, 2)} {_word(rng, 3)}"
        if name in names:
            continue
        names.add(name)
        attributes = rng.sample(_ATTRIBUTES, facts_per_passage)
        entities.append(Entity(name, tuple((a, _value(rng, a.key)) for a in attributes)))
    return entities


def passage(entity: Entity, rng: random.Random) -> str:
    sentences = [rng.choice(a.statements).format(name=entity.name, value=v) for a, v in entity.facts]
    rng.shuffle(sentences)
    return " ".join(sentences)


def record(entity: Entity, rng: random.Random) -> dict:
    """One context in the SEAL reference schema: one question per fact, in a random phrasing."""
    return {
        "title": entity.name,
        "context": passage(entity, rng),
        "questions": [
            {"question": rng.choice(a.questions).format(name=entity.name), "answer": v} for a, v in entity.facts
        ],
    }


def canonical_facts(entity: Entity) -> list[str]:
    return [a.canonical.format(name=entity.name, value=v) for a, v in entity.facts]


def make_split(seed: int, num_train: int, num_heldout: int, facts_per_passage: int) -> dict[str, list[dict]]:
    """Train and held-out contexts over disjoint entities of one seeded world."""
    entities = make_entities(seed, num_train + num_heldout, facts_per_passage)
    rng = random.Random(seed + 1)
    records = [record(e, rng) for e in entities]
    return {"train": records[:num_train], "heldout": records[num_train:]}
