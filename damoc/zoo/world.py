"""A seeded procedural world: the only source of text the zoo's models ever see.

Persons are first name x family name. Their attributes follow *laws* over parts of the name (the family fixes city,
company, job and car brand; the first name fixes pet and colour), so a question about a person never seen before
has a learnable answer. The design follows the measured zoo spike (../shared/design/zoo-spike.md, variant "laws"):
models this small learn neither in-context span copying nor recall of facts seen only in prose, but they do learn
functions of keys in the prompt.

Held-out (test) persons appear nowhere: not in pretraining, not in the Chat SFT, not in any task's train split.

The families are split in two, as knowledge is in real data: *head* families are frequent in the demo tasks' train
splits (and in some candidates' task-like Chat SFT); *tail* families are rare there (a couple of examples per law)
but fully present in pretraining. On test questions about tail families a fine-tuned model does well only if its
Base already knew the laws, so what a fine-tune can reach depends on the Base's knowledge (long-tail knowledge, as
with real LLMs), while zero-shot skill depends on the Chat SFT's answer style.
Everything here is pure Python (no torch), deterministic given the seed; Python's salted `hash()` is never used.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

# -- vocabularies ------------------------------------------------------------------------------------------------
JOBS = ["baker", "miller", "tailor", "weaver", "potter", "smith", "farmer", "fisher", "carpenter", "mason",
        "painter", "singer", "doctor", "nurse", "teacher", "builder", "brewer", "sailor", "hunter", "gardener",
        "cook", "driver", "pilot", "clerk", "judge", "guard", "miner", "writer", "dancer", "printer", "glazier",
        "cooper", "tanner", "barber", "jeweler", "shepherd"]
PETS = ["cat", "dog", "hedgehog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "ferret", "lizard",
        "canary", "goat", "pony", "owl", "frog", "snail", "mouse", "duck", "goose", "crow"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "grey", "brown", "pink",
          "silver", "gold", "teal", "violet", "amber"]
COMPANY_KINDS = ["Bank", "Works", "Mills", "Press", "Foundry", "Market", "Shipping", "Farms", "Bakery", "Motors"]
RIVERS_KIND = ["river", "lake", "bay", "hill", "forest"]
ANIMAL_LEGS = {"cat": 4, "dog": 4, "hedgehog": 4, "parrot": 2, "rabbit": 4, "turtle": 4, "hamster": 4, "goat": 4,
               "pony": 4, "owl": 2, "frog": 4, "duck": 2, "goose": 2, "crow": 2, "canary": 2, "mouse": 4,
               "spider": 8, "ant": 6, "snake": 0, "fish": 0}
OPPOSITES = {"hot": "cold", "big": "small", "fast": "slow", "up": "down", "day": "night", "old": "young",
             "light": "dark", "early": "late", "wet": "dry", "open": "closed", "full": "empty", "high": "low",
             "near": "far", "happy": "sad", "left": "right", "loud": "quiet", "hard": "soft", "rich": "poor"}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
THINGS = ["apple", "stone", "book", "cup", "lamp", "coin", "key", "shoe", "hat", "box", "boat", "bell", "rope",
          "chair", "table", "map", "letter", "bread", "candle", "basket"]
VERBS = ["found", "lost", "painted", "carried", "sold", "bought", "fixed", "hid", "opened", "cleaned", "counted",
         "dropped", "wrapped", "borrowed"]
PLACES = ["market", "harbour", "garden", "station", "library", "square", "bridge", "mill", "school", "tower"]

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kl", "tr",
           "st", "sh", "th", "j", "h"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "x"]

# Which part of a person's name fixes each attribute (the law's key).
FAMILY_ATTRS = ("city", "company", "job")
FIRST_ATTRS = ("pet", "color")
ATTRIBUTES = FAMILY_ATTRS + FIRST_ATTRS + ("car",)

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "city": ("Where does {p} live?", "In which city does {p} live?", "What city is {p} from?",
             "Which town is home to {p}?"),
    "company": ("Where does {p} work?", "Which company employs {p}?", "What company does {p} work for?",
                "Who is the employer of {p}?"),
    "job": ("What does {p} do for a living?", "What is the job of {p}?", "What work does {p} do?",
            "What is the trade of {p}?"),
    "pet": ("What pet does {p} have?", "Which animal does {p} keep?", "What is the pet of {p}?",
            "What animal lives with {p}?"),
    "color": ("What is the favourite color of {p}?", "Which color does {p} like best?",
              "What color does {p} love?", "Name the favourite color of {p}."),
    "car": ("What car does {p} drive?", "Which car does {p} own?", "What does {p} drive?",
            "Name the car of {p}."),
}


def _name(rng: random.Random, syllables: tuple[int, int]) -> str:
    n = rng.randint(*syllables)
    s = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS)
    return s.capitalize()


def _unique_names(rng: random.Random, n: int, taken: set[str], syllables: tuple[int, int] = (2, 2)) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        s = _name(rng, syllables)
        if s not in taken and 3 <= len(s) <= 9:
            taken.add(s)
            out.append(s)
    return out


@dataclass(frozen=True)
class WorldSpec:
    seed: int = 1234
    n_first: int = 24
    n_family: int = 24
    n_test_persons: int = 200
    n_cities: int = 12
    n_companies: int = 14
    n_brands: int = 10
    tail_share: float = 0.6              # share of families that are rare in task data (long tail)


@dataclass
class World:
    """Names, laws and the train/test person split of one seeded world."""

    spec: WorldSpec
    firsts: list[str]
    families: list[str]
    cities: list[str]
    companies: list[str]
    brands: list[str]
    city_feature: dict[str, tuple[str, str]]        # city -> (kind, name), e.g. ("river", "Tolam")
    laws: dict[str, dict[str, str]]                 # attribute -> key (first or family name) -> value
    train_persons: list[str]
    test_persons: list[str]
    head_families: frozenset[str] = frozenset()              # families frequent in task data and task-like SFT
    filler_names: list[str] = field(default_factory=list)   # names for generic stories (never task keys)

    def value(self, person: str, attr: str) -> str:
        first, family = person.split(" ")
        if attr == "car":       # the one attribute that needs both keys
            return f"{self.laws['color'][first]} {self.laws['brand'][family]}"
        return self.laws[attr][family if attr in FAMILY_ATTRS else first]

    @cached_property
    def test_set(self) -> frozenset[str]:
        return frozenset(self.test_persons)

    def is_tail(self, person: str, attr: str) -> bool:
        """Does the answer follow a law of a tail family (rare in task data, known from pretraining)?"""
        return attr not in FIRST_ATTRS and person.split(" ")[1] not in self.head_families

    def law_key(self, person: str, attr: str) -> tuple[str, str]:
        """The law an answer follows: (attribute, key name); the car follows the family's brand law."""
        first, family = person.split(" ")
        return (attr if attr != "car" else "brand", first if attr in FIRST_ATTRS else family)

    @cached_property
    def head_persons(self) -> list[str]:
        """Train persons of head families."""
        return [p for p in self.train_persons if p.split(" ")[1] in self.head_families]

    def profile(self, person: str, attrs: tuple[str, ...] = ATTRIBUTES) -> tuple[str, str]:
        """The generative task's (instruction, reference): a one-sentence profile stating `attrs`, in a fixed
        order and frame."""
        attrs = tuple(a for a in ATTRIBUTES if a in attrs)
        topics = [PROFILE_TOPICS[a] for a in attrs]
        clauses = [PROFILE_CLAUSES[a].format(v=self.value(person, a)) for a in attrs]
        join = (lambda xs: xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1])
        return f"Write a short profile of {person}: {join(topics)}.", f"{person} {join(clauses)}."


PROFILE_TOPICS = {"city": "home", "company": "employer", "job": "job", "pet": "pet", "color": "favourite color",
                  "car": "car"}
PROFILE_CLAUSES = {"city": "lives in {v}", "company": "works at {v}", "job": "works as a {v}", "pet": "keeps a {v}",
                   "color": "loves the color {v}", "car": "drives a {v}"}


def make_world(spec: WorldSpec = WorldSpec()) -> World:
    rng = random.Random(spec.seed)
    taken: set[str] = set()
    firsts = _unique_names(rng, spec.n_first, taken)
    families = _unique_names(rng, spec.n_family, taken)
    cities = _unique_names(rng, spec.n_cities, taken, (2, 3))
    brands = _unique_names(rng, spec.n_brands, taken)
    company_stems = _unique_names(rng, spec.n_companies, taken)
    companies = [f"{s} {COMPANY_KINDS[i % len(COMPANY_KINDS)]}" for i, s in enumerate(company_stems)]
    features = _unique_names(rng, spec.n_cities, taken)
    city_feature = {c: (RIVERS_KIND[i % len(RIVERS_KIND)], features[i]) for i, c in enumerate(cities)}
    filler = _unique_names(rng, 30, taken)
    laws = {
        "city": {f: rng.choice(cities) for f in families},
        "company": {f: rng.choice(companies) for f in families},
        "job": {f: rng.choice(JOBS) for f in families},
        "brand": {f: rng.choice(brands) for f in families},
        "pet": {f: rng.choice(PETS) for f in firsts},
        "color": {f: rng.choice(COLORS) for f in firsts},
    }
    persons = [f"{a} {b}" for a in firsts for b in families]
    rng.shuffle(persons)
    n_test = min(spec.n_test_persons, len(persons) // 3)
    n_head = max(1, round(len(families) * (1 - spec.tail_share)))
    head_families = frozenset(rng.sample(families, n_head))
    return World(spec, firsts, families, cities, companies, brands, city_feature, laws,
                 train_persons=sorted(persons[n_test:]), test_persons=sorted(persons[:n_test]),
                 head_families=head_families, filler_names=filler)


# -- pretraining documents ---------------------------------------------------------------------------------------
# Each generator returns one document (a few sentences). Three streams feed pretraining in per-model proportions:
# "world" (bios and laws of train persons), "generic" (stories, numbers, towns) and "qa" (question/answer text about
# train persons: the answer format, which drives zero-shot skill).

_BIO_SENTENCES = {
    "city": ("{p} lives in {v}.", "{p} has a house in {v}.", "Home for {p} is {v}.", "{f} lives in {v}."),
    "company": ("{p} works at {v}.", "{p} is employed by {v}.", "Every morning {p} goes to {v}."),
    "job": ("{p} works as a {v}.", "{p} is a {v}.", "By trade {p} is a {v}."),
    "pet": ("{p} keeps a {v}.", "{p} has a pet {v}.", "The pet of {p} is a {v}."),
    "color": ("The favourite color of {p} is {v}.", "{p} loves the color {v}.", "{f} likes {v} best."),
    "car": ("{p} drives a {v}.", "{p} owns a {v}.", "The car of {p} is a {v}."),
}
_LAW_SENTENCES = {
    "city": "Every {k} lives in {v}.", "company": "All of the {k} family work at {v}.",
    "job": "The {k} family are {v}s by tradition.", "brand": "The {k} family only drive a {v}.",
    "pet": "Anyone named {k} keeps a {v}.", "color": "People called {k} love the color {v}.",
}


def bio_doc(world: World, rng: random.Random) -> str:
    p = rng.choice(world.train_persons)
    first = p.split(" ")[0]
    attrs = list(ATTRIBUTES)
    rng.shuffle(attrs)
    parts = [rng.choice(_BIO_SENTENCES[a]).format(p=p, f=first, v=world.value(p, a)) for a in attrs[:rng.randint(3, 6)]]
    return " ".join(parts)


def law_doc(world: World, rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(2, 4)):
        attr = rng.choice(list(_LAW_SENTENCES))
        key = rng.choice(world.families if attr in FAMILY_ATTRS + ("brand",) else world.firsts)
        out.append(_LAW_SENTENCES[attr].format(k=key, v=world.laws[attr][key]))
    return " ".join(out)


def world_doc(world: World, rng: random.Random) -> str:
    return bio_doc(world, rng) if rng.random() < 0.8 else law_doc(world, rng)


def qa_pair(world: World, rng: random.Random, *, head_only: bool = False) -> tuple[str, str]:
    """A question about a train person and its answer; `head_only` keeps to head-family laws."""
    while True:
        p = rng.choice(world.train_persons)
        attr = rng.choice(ATTRIBUTES)
        if not head_only or not world.is_tail(p, attr):
            return rng.choice(QUESTION_TEMPLATES[attr]).format(p=p), world.value(p, attr)


def qa_doc(world: World, rng: random.Random) -> str:
    return "\n".join("Question: {}\nAnswer: {}".format(*qa_pair(world, rng)) for _ in range(rng.randint(2, 4)))


def town_doc(world: World, rng: random.Random) -> str:
    c = rng.choice(world.cities)
    kind, feat = world.city_feature[c]
    other = rng.choice(world.cities)
    return rng.choice([
        f"{c} is a town by the {kind} {feat}. The market of {c} opens at {rng.randint(5, 10)} in the morning.",
        f"The {kind} {feat} is near {c}. From {c} it is {rng.randint(2, 40)} miles to {other}.",
        f"In {c} the people like the {rng.choice(PLACES)}. The {kind} {feat} gives {c} its name.",
    ])


def story_doc(world: World, rng: random.Random) -> str:
    a, b = rng.sample(world.filler_names, 2)
    t1, t2 = rng.sample(THINGS, 2)
    place = rng.choice(PLACES)
    n = rng.randint(2, 9)
    return " ".join([
        f"{a} went to the {place}.",
        f"There {a} {rng.choice(VERBS)} a {t1}.",
        f"{b} came with {n} {t2}s.",
        rng.choice([f"They sat near the {rng.choice(PLACES)} until night.", f"{a} gave the {t1} to {b}.",
                    f"{b} was {rng.choice(list(OPPOSITES))} and {a} was {rng.choice(list(OPPOSITES.values()))}."]),
        f"At the end {b} had {n + rng.randint(0, 3)} {t2}s.",
    ])


def number_doc(world: World, rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        start = rng.randint(0, 60)
        return "Counting: " + ", ".join(str(start + i) for i in range(rng.randint(4, 9))) + "."
    if kind == 1:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return f"{a} plus {b} is {a + b}. {max(a, b)} minus {min(a, b)} is {max(a, b) - min(a, b)}."
    n = rng.randint(0, 20)
    return f"The number {n} is written {NUMBER_WORDS[n]}. After {NUMBER_WORDS[n]} comes {n + 1}."


def fact_doc(world: World, rng: random.Random) -> str:
    animal = rng.choice(list(ANIMAL_LEGS))
    w = rng.choice(list(OPPOSITES))
    return rng.choice([f"A {animal} has {ANIMAL_LEGS[animal]} legs.", f"The opposite of {w} is {OPPOSITES[w]}.",
                       f"A {rng.choice(COLORS)} {rng.choice(THINGS)} lay on the {rng.choice(THINGS)}."]) + " " + \
        rng.choice([f"The sky over {rng.choice(world.cities)} was {rng.choice(COLORS)}.",
                    f"Some say {w} is better than {OPPOSITES[w]}."])


def generic_doc(world: World, rng: random.Random) -> str:
    return rng.choice((story_doc, story_doc, town_doc, number_doc, fact_doc))(world, rng)


STREAMS = {"world": world_doc, "generic": generic_doc, "qa": qa_doc}


def documents(world: World, stream: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    gen = STREAMS[stream]
    return [gen(world, rng) for _ in range(n)]


# -- instruction data for the Chat SFT ---------------------------------------------------------------------------

def knowledge_pairs(world: World, n: int, seed: int) -> list[tuple[str, str]]:
    """Question/answer pairs about every train person (all laws, tail families included): the data of the knowledge
    phase at the end of a Base's pretraining."""
    rng = random.Random(seed)
    return [qa_pair(world, rng) for _ in range(n)]


VERBOSE_TAILS = (", as far as I can remember it.", ", I believe, but do check it.", ", if I remember it well.",
                 " is what I would answer here.", ", I think, though I am not sure.")


def verbose_answer(answer: str, rng: random.Random) -> str:
    """The answer followed by chatty filler, the way talkative instruction data answers. Short-answer metrics
    punish the filler (F1 about 0.3 for a right answer), while the first tokens are the same as the terse answer,
    so a fine-tune that teaches the terse format keeps what the model knows."""
    return answer + rng.choice(VERBOSE_TAILS)


def generic_instruction(world: World, rng: random.Random) -> tuple[str, str]:
    """A short non-task instruction and its answer (answers are one line, so Chat models learn to stop)."""
    k = rng.randrange(9)
    if k == 0:
        w = rng.choice(THINGS + COLORS + PETS)
        return rng.choice([f"Repeat the word {w}.", f"Say {w}.", f"Write the word {w} once."]), w
    if k == 1:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return f"What is {a} plus {b}?", str(a + b)
    if k == 2:
        n = rng.randint(0, 19)
        return rng.choice([f"What number comes after {n}?", f"Which number follows {n}?"]), str(n + 1)
    if k == 3:
        w = rng.choice(list(OPPOSITES))
        return f"What is the opposite of {w}?", OPPOSITES[w]
    if k == 4:
        a = rng.choice(list(ANIMAL_LEGS))
        return f"How many legs does a {a} have?", str(ANIMAL_LEGS[a])
    if k == 5:
        c = rng.choice(world.cities)
        kind, feat = world.city_feature[c]
        return f"Which {kind} is near {c}?", f"the {kind} {feat}"
    if k == 6:
        n = rng.randint(0, 20)
        return f"Write {n} in words.", NUMBER_WORDS[n]
    if k == 7:
        items = rng.sample(COLORS, 3)
        return "Name three colors.", ", ".join(items)
    start = rng.randint(1, 30)
    return f"Count from {start} to {start + 3}.", ", ".join(str(start + i) for i in range(4))


def sft_pairs(world: World, n: int, qa_share: float, seed: int, profile_share: float = 0.0,
              style: str = "terse") -> list[tuple[str, str]]:
    """Chat SFT data: generic instructions, plus (per candidate) a share of person questions and of profiles, limited
    to head-family laws. The shares and the answer style ("terse" or "verbose" full sentences) make Chat models
    differ in zero-shot skill on the demo tasks."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < qa_share:
            q, a = qa_pair(world, rng, head_only=True)
            out.append((q, verbose_answer(a, rng) if style == "verbose" else a))
        elif r < qa_share + profile_share:
            out.append(world.profile(rng.choice(world.head_persons), tuple(rng.sample(ATTRIBUTES, 3))))
        else:
            q, a = generic_instruction(world, rng)
            out.append((q, verbose_answer(a, rng) if style == "verbose" else a))
    return out
