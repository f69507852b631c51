"""What a set of captions says beyond its n-gram scores: object hallucination and variety.

Object hallucination, in the spirit of CHAIR (Rohrbach et al. 2018, "Object Hallucination in Image
Captioning"), adapted to Flickr8k, which has no object annotations: the objects an image holds are those that
any of its reference captions names. A caption's object word is *hallucinated* when none of the image's
references names that object. Words are mapped to objects through synonym groups (`OBJECT_GROUPS`, plurals
included); every word for a person (man, girls, crowd, skier, ...) is one object, "person", as CHAIR counts
them. Two rates:

    per mention  = hallucinated object mentions / object mentions        (CHAIR_i)
    per caption  = captions with a hallucinated object / captions        (CHAIR_s)

`human_hallucination` gives the same rates for people: each reference judged against the other four.

Variety (`caption_diagnostics`): distinct captions, the share of images given the most common caption, the
vocabulary used, captions copied verbatim from the training captions, and captions that end on a function
word ("bad endings": a caption cut after "a", "the", "of", ...).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .tokenize import simple_tokenize

# object -> the words that name it (plurals listed where they are irregular; regular ones are found by rule)
OBJECT_GROUPS: dict[str, tuple[str, ...]] = {
    "person": ("person", "people", "man", "men", "woman", "women", "boy", "girl", "child", "children", "kid",
               "baby", "toddler", "guy", "lady", "ladies", "gentleman", "gentlemen", "adult", "teenager", "teen",
               "player", "crowd", "team", "biker", "cyclist", "bicyclist", "rider", "skier", "snowboarder",
               "surfer", "skateboarder", "swimmer", "climber", "runner", "dancer", "worker", "family", "couple",
               "friend", "student", "tourist", "spectator", "athlete", "wrestler", "boxer", "soldier", "officer",
               "policeman", "police", "mother", "father", "dad", "mom", "daughter", "son", "brother", "sister",
               "group", "someone", "youngster", "infant", "musician", "performer", "hiker", "jockey", "cowboy",
               "goalie", "pitcher", "batter", "bride", "groom", "audience", "individual"),
    "dog": ("dog", "puppy", "puppies", "pup", "terrier", "poodle", "retriever", "labrador", "lab", "collie",
            "greyhound", "dachshund", "beagle", "chihuahua", "spaniel", "shepherd", "pitbull", "husky", "pug"),
    "cat": ("cat", "kitten", "kitty"),
    "horse": ("horse", "pony", "ponies"),
    "cow": ("cow", "cattle", "bull", "calf", "calves"),
    "sheep": ("sheep", "lamb", "goat"),
    "bird": ("bird", "duck", "goose", "geese", "pigeon", "seagull", "gull", "chicken"),
    "ball": ("ball", "football", "soccerball", "basketball", "volleyball", "baseball", "softball", "tennisball"),
    "frisbee": ("frisbee",),
    "bicycle": ("bicycle", "bike"),
    "motorcycle": ("motorcycle", "motorbike", "dirtbike", "atv", "scooter"),
    "car": ("car", "jeep", "van", "taxi"),
    "truck": ("truck",),
    "bus": ("bus", "buses"),
    "train": ("train", "subway"),
    "boat": ("boat", "kayak", "canoe", "raft", "sailboat", "ship"),
    "skateboard": ("skateboard",),
    "surfboard": ("surfboard", "board"),
    "snowboard": ("snowboard",),
    "ski": ("ski", "skis"),
    "sled": ("sled", "sleigh"),
    "bench": ("bench", "benches"),
    "chair": ("chair", "couch", "sofa"),
    "table": ("table", "desk"),
    "umbrella": ("umbrella",),
    "hat": ("hat", "cap", "beanie"),
    "helmet": ("helmet",),
    "stick": ("stick", "bat", "racket", "racquet", "pole"),
    "rope": ("rope", "leash"),
    "toy": ("toy",),
    "kite": ("kite",),
    "tent": ("tent",),
    "fence": ("fence",),
    "building": ("building", "house", "church", "skyscraper", "store", "shop"),
    "tree": ("tree", "trees", "bush", "bushes"),
    "rock": ("rock", "boulder", "cliff", "stone"),
    "flag": ("flag",),
    "camera": ("camera", "phone"),
    "guitar": ("guitar", "instrument", "drum", "violin", "microphone"),
    "sign": ("sign", "banner", "poster"),
    "bag": ("bag", "backpack", "purse", "suitcase"),
    "fountain": ("fountain", "sprinkler"),
    "pool": ("pool",),
    "ramp": ("ramp",),
    "tire": ("tire", "tyre", "wheel"),
    "slide": ("slide", "swing"),
    "wall": ("wall",),
    "bridge": ("bridge",),
}
WORD_TO_OBJECT = {w: obj for obj, words in OBJECT_GROUPS.items() for w in words}

FUNCTION_WORDS = frozenset("""a an the and or but of in on at to from by with into onto over under for as while
that this these those his her their its is are was were be some""".split())


def object_of(word: str) -> str | None:
    """The object a (lowercase) word names, plurals by rule (dogs, benches, puppies), or None."""
    if word in WORD_TO_OBJECT:
        return WORD_TO_OBJECT[word]
    for cut, add in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(cut) and len(word) > len(cut) + 2 and word[: -len(cut)] + add in WORD_TO_OBJECT:
            return WORD_TO_OBJECT[word[: -len(cut)] + add]
    return None


def objects_in(caption: str) -> list[str]:
    """The objects a caption names, one entry per mention, in order."""
    return [obj for w in simple_tokenize(caption).split() if (obj := object_of(w)) is not None]


def hallucination(captions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """captions[i] judged against references[i] (a list of reference captions of image i).

    Returns per_mention (hallucinated mentions / mentions; 0 when there are none), per_caption (captions with
    at least one hallucinated object / captions), the counts behind them, and the most often hallucinated
    objects.
    """
    if len(captions) != len(references):
        raise ValueError(f"{len(captions)} captions but {len(references)} reference lists: one list per caption")
    mentions = wrong = bad_captions = 0
    invented: Counter = Counter()
    for caption, refs in zip(captions, references, strict=True):
        if not refs:
            raise ValueError("every caption needs at least one reference to judge its objects against")
        present = {obj for r in refs for obj in objects_in(r)}
        named = objects_in(caption)
        missing = [obj for obj in named if obj not in present]
        mentions, wrong = mentions + len(named), wrong + len(missing)
        bad_captions += bool(missing)
        invented.update(missing)
    return {"per_mention": wrong / mentions if mentions else 0.0, "per_caption": bad_captions / len(captions),
            "mentions": mentions, "hallucinated_mentions": wrong, "captions": len(captions),
            "captions_with_hallucination": bad_captions, "most_hallucinated": invented.most_common(5)}


def human_hallucination(references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The same rates for human captions: every reference of every image judged against that image's others."""
    captions, others = [], []
    for refs in references:
        for j, r in enumerate(refs):
            captions.append(r)
            others.append([o for k, o in enumerate(refs) if k != j])
    return hallucination(captions, others)


@functools.lru_cache(maxsize=4)
def tokenized_set(captions: tuple[str, ...]) -> frozenset[str]:
    """The captions tokenised (`simple_tokenize`), as a set; kept for the next call with the same captions (a report
    compares every row with the same 30,000 training captions)."""
    return frozenset(simple_tokenize(c) for c in captions)


def caption_diagnostics(captions: Sequence[str], train_captions: Iterable[str] = ()) -> dict[str, Any]:
    """Variety of a set of captions (one per image), compared after tokenisation (`simple_tokenize`).

    distinct: different captions; top_share: the share of captions equal to the most common one (and that
    caption); vocabulary: different words used; copied: captions equal to some training caption (share);
    bad_endings: captions whose last word is a function word (share), an empty caption counted as one.
    """
    if not captions:
        raise ValueError("no captions to diagnose")
    tokens = [simple_tokenize(c) for c in captions]
    counts = Counter(tokens)
    top, top_count = counts.most_common(1)[0]
    train = tokenized_set(tuple(train_captions))
    bad = sum(1 for t in tokens if not t or t.split()[-1] in FUNCTION_WORDS)
    return {"distinct": len(counts), "top_share": top_count / len(tokens), "top_caption": top,
            "vocabulary": len({w for t in tokens for w in t.split()}),
            "copied": sum(t in train for t in tokens) / len(tokens), "bad_endings": bad / len(tokens)}
