"""The tiny model's pretraining corpus for knowledge incorporation. It teaches the world's general knowledge
and the formats the SEAL loop uses: passages, title-prefixed fact sentences (the form in which the synthetic
task asks), and self-edits for the task's prompt written in styles of mixed usefulness (all implications, part
of them, the stated facts only, copied sentences, vague remarks), so that a policy trained by the outer loop
has something to select among, and copy drills, from which the model learns to copy from its context (names
and values into self-edits)."""

import random

from seal_dist.config import KnowledgePretrainingConfig
from seal_dist.example import Example
from seal_dist.tasks.knowledge import world

# The styles of the self-edits in the pretraining corpus, with their weights: what the base policy (round 0)
# samples from. Only "implications" writes out every implied fact; RL has to find and reinforce it.
SELF_EDIT_STYLES = {"implications": 1, "partial": 1, "facts": 1, "copy": 1, "vague": 1}


def _numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def _self_edit(entity: world.Entity, text: str, rng: random.Random) -> str:
    """A self-edit in a random style. Lines follow the passage's order (each implication after its fact),
    which keeps reading simple enough for a tiny model."""
    stated, implied = world.stated_facts(entity), world.implied_facts(entity)
    both = [line for pair in zip(stated, implied) for line in pair]
    style = rng.choices(list(SELF_EDIT_STYLES), weights=list(SELF_EDIT_STYLES.values()))[0]
    if style == "implications":
        return _numbered(both)
    if style == "partial":
        return _numbered([line for line in both if rng.random() < 0.5] or both[:1])
    if style == "facts":
        return _numbered(stated)
    if style == "copy":
        return _numbered([s.strip() + "." for s in text.split(".") if s.strip()])
    remarks = [f"The passage is about {entity.name}.", f"{entity.name} is a person.",
               f"{entity.name} had a life.", f"The text describes {entity.name}.", "It is a short story."]
    return _numbered(rng.sample(remarks, 3))


def _copy_drill(rng: random.Random, groups: list[list[str]]) -> str:
    """A copy drill: a random list of items (first names, last names and values, each group equally likely),
    then "again" and the same list. Predicting the repeat takes induction (find the earlier occurrence of the
    current item, copy what followed it), the circuit that reading a passage into a self-edit needs; a tiny
    model forms it from these drills within the pretraining budget, not from the reading examples alone.
    Name words come in random order, so no first name is tied to the last names of the pretraining people
    (the task's people pair them differently) and a name is copied, not completed from memory."""
    chosen = " ".join(rng.choice(rng.choice(groups)) for _ in range(rng.randint(4, 10)))
    return f"{chosen}\nagain\n{chosen}"


def pretraining_corpus(cfg: KnowledgePretrainingConfig, prompt_template: str, seed: int) -> list[Example]:
    """The world's general knowledge; passages and stated and implied fact sentences about the pretraining
    people (recall); for further people, with facts drawn afresh, a passage under the task's prompt followed
    by a self-edit in one of the styles above (reading: the facts must be taken from the context, since they
    cannot be recalled); and copy drills."""
    w = cfg.world
    attributes = world.attributes_named(list(w.attributes), "task.pretraining.world.attributes")
    people = world.make_entities(w.seed, w.num_train, w.facts_per_passage, world.PRETRAINING,
                                     attributes=attributes)
    # Readers' facts are fresh draws, nothing to recall, so they are named from both populations: a name must
    # be copied from the passage, not completed from the pairings of the people the model memorises.
    half = cfg.readers // 2
    readers = (world.make_entities(w.seed + 1, half, w.facts_per_passage, world.PRETRAINING,
                                       distinct=False, attributes=attributes)
               + world.make_entities(w.seed + 2, cfg.readers - half, w.facts_per_passage, world.TASK,
                                         distinct=False, attributes=attributes))
    rng = random.Random(seed)
    corpus = []
    for entity in people:
        corpus += [Example("", f"{entity.name}\n{world.passage(entity, rng)}") for _ in range(2)]
        facts = world.stated_facts(entity) + world.implied_facts(entity)
        corpus += [Example("", f"{entity.name}\n{fact}") for fact in facts]  # recall, in the questions' form
    for entity in readers:
        text = world.passage(entity, rng)
        corpus.append(Example(prompt_template.format(title=entity.name, context=text), _self_edit(entity, text, rng)))
    groups = [world.FIRST_NAMES, world.LAST_NAMES] + [world.values(a) for a in attributes]
    corpus += [Example("", _copy_drill(rng, groups)) for _ in range(cfg.copy_drills)]
    general = world.general_knowledge(attributes)
    corpus += [Example("", sentence) for sentence in general * (w.num_train // len(general))]
    rng.shuffle(corpus)
    return corpus
