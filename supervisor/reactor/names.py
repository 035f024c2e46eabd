"""Container names: Docker's rules, and generated `adjective_surname` names."""

from __future__ import annotations

import random
import re

from supervisor.errors import InvalidArgument

_VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_ADJECTIVES = (
    "agile",
    "bold",
    "brave",
    "calm",
    "clever",
    "cool",
    "eager",
    "fervent",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "merry",
    "nifty",
    "noble",
    "quiet",
    "quirky",
    "serene",
    "sharp",
    "steady",
    "sweet",
    "tender",
    "vibrant",
    "wise",
    "witty",
    "zen",
)
_SURNAMES = (
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "einstein",
    "euler",
    "fermi",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "torvalds",
    "turing",
    "wirth",
    "wozniak",
)


def validate_name(name: str) -> str:
    """The name without Docker's leading slash; InvalidArgument if it breaks Docker's rule."""
    if not _VALID.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def generate_name(rng: random.Random, taken: set[str]) -> str:
    for _ in range(100):
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_SURNAMES)}"
        if name not in taken:
            return name
    while True:
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_SURNAMES)}{rng.randint(1, 9999)}"
        if name not in taken:
            return name
