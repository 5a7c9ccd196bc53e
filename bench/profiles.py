"""Run profiles: how large the images are and how much compute methods spend.

Methods read their iteration budgets from the profile name (see
``Method.profiles``); the profile itself fixes the image crop and how many
images a run uses by default. The profile is stored with every result.

Example:
    >>> get_profile("smoke").crop
    64
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UnknownNameError
from bench.params import suggest


@dataclass(frozen=True)
class Profile:
    """A named compute budget.

    >>> Profile("tiny", 32, 1, "demo").crop
    32
    """

    name: str
    crop: int | None
    default_limit: int | None
    description: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("smoke", 64, 2, "tests and CI: 64 px centre crops, at most 2 images, a few iterations"),
        Profile("quick", 256, None, "CPU default: 256 px centre crops, reduced iteration budgets"),
        Profile("paper", None, None, "full images, the official iteration counts; meant for a GPU"),
    )
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise UnknownNameError(
            f"unknown profile '{name}'.{suggest(name, list(PROFILES))} "
            f"Available: {', '.join(PROFILES)}."
        )
    return PROFILES[name]
