"""Texts for holding the compiled scanner (`fjordgate_native.scan_text`) to `Detector.scan`.

Valid identifiers of every type in every written form, near-misses made from
them (a digit changed, a character cut off), words that make a bare number an
account or organisation number, and random characters from an alphabet rich in
what the candidate pattern looks at (digits, separators, hex letters, ÆØÅ, other
non-ASCII), glued together with random separators. Used by the property test in
test_native_detector.py and by the fuzz run (`python -m tests.gateway.fuzz_native_detector`).
"""

from __future__ import annotations

import random
from typing import Final

from gateway.pii.corpus import CorpusBuilder
from gateway.synthetic import synthetic_fodselsnummer

ALPHABET: Final = (
    "0123456789" * 3
    + "   ...---++@@::/,\n"
    + "abcdefABCDEFghxzGHNOPSTZ"
    + "ÆØÅæøå"
    + "éßµ²İ\u212a–«»\xa0\u2028Ω中😀\ud800"
)
SEPARATORS: Final = ("", " ", " ", ".", "-", ",", "\n", ". ", ": ", "/", "@", "+", "=", "\xa0", "–")
WORDS: Final = (
    "konto",
    "Kontonr.",
    "account",
    "kto",
    "org.nr.",
    "orgnr",
    "foretak",
    "enhet",
    "MVA",
    "brreg",
    "Brønnøysund",
    "fnr",
    "tlf",
    "IBAN",
    "Se",
    "ps1:",
)


def _groupings(digits: str, cuts: tuple[int, ...], separators: str) -> list[str]:
    parts = [digits[a:b] for a, b in zip((0, *cuts), (*cuts, len(digits)), strict=True)]
    return [sep.join(parts) for sep in separators]


def _fragments(seed: int = 7, each: int = 12) -> tuple[str, ...]:
    """Valid identifiers of every type in their written forms."""
    rng = random.Random(seed)
    build = CorpusBuilder(seed)
    out: list[str] = []
    for _ in range(each):
        for kind in ("fodselsnummer", "d_nummer", "h_nummer"):
            for synthetic in (False, True):
                n = build.personal_number(kind, synthetic)
                out += [*_groupings(n, (6,), " -"), n]
        n = synthetic_fodselsnummer(rng)
        out += [n, f"{n[:6]} {n[6:]}"]
        n = build.kontonr()
        out += [n, *_groupings(n, (4, 6), ". ")]
        for synthetic in (False, True):
            n = build.orgnr(synthetic)
            out += [n, *_groupings(n, (3, 6), " ")]
        n = build.iban()
        out += [n, " ".join(n[i : i + 4] for i in range(0, len(n), 4)), n.lower()]
        n = build.card()
        out += [n, *_groupings(n, (4, 8, 12), " -"), *_groupings(n, (4, 10), " ")]
        out.append(build.email())
        out.append(
            f"{rng.choice(['ærlend', 'kari.n', 'a_b+c'])}@{rng.choice(['nav.no', 'x.y.no'])}"
        )
        mobile = f"{rng.choice('49')}{rng.randrange(10**7):07d}"
        land = f"{rng.choice('2357')}{rng.randrange(10**7):07d}"
        for n in (mobile, land):
            out += [
                n,
                f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:]}",
                f"{n[:3]} {n[3:5]} {n[5:]}",
                f"+47{n}",
                f"+47 {n}",
                f"+47 {n[:2]} {n[2:4]} {n[4:6]} {n[6:]}",
                f"0047 {n[:3]} {n[3:5]} {n[5:]}",
                f"0047{n}",
            ]
        out += [
            f"+46 70-{rng.randrange(100, 999)} {rng.randrange(10, 99)} {rng.randrange(10, 99)}",
            f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
            f"00{rng.randrange(1, 999)}{rng.randrange(10**9)}",
            f"+{rng.randrange(1, 9999)}-{rng.randrange(10**6)}",
        ]
        out.append(build.ip())
        out.append(".".join(str(rng.randrange(300)) for _ in range(4)))
        groups = [f"{rng.randrange(0x10000):x}" for _ in range(8)]
        out += [
            ":".join(groups),
            f"{groups[0]}::{groups[1]}",
            f"::ffff:{rng.randrange(256)}.{rng.randrange(256)}.1.2",
            f"{groups[2]}::",
            "::1",
            f"{groups[3]}:{groups[4]}::{groups[5]}:",
        ]
        out.append(build.plate())
        out.append(build.plate().replace(" ", ""))
    return tuple(out)


FRAGMENTS: Final = _fragments()


def mutate(fragment: str, rng: random.Random) -> str:
    """A near-miss: one digit changed, or a character cut from an end."""
    choice = rng.randrange(3)
    if choice == 0:
        positions = [i for i, c in enumerate(fragment) if c.isdigit()]
        if positions:
            i = rng.choice(positions)
            return fragment[:i] + rng.choice("0123456789") + fragment[i + 1 :]
    if choice == 1:
        return fragment[1:]
    return fragment[:-1]


# Filler between a word and a number: no digits (a digit ends what a word speaks for).
FILLER: Final = "abcdefghijklmnopqrstuvwxyzæøå   .!?\nABCÆØÅ"


def word_then_number(rng: random.Random) -> str:
    """A context word, filler, then a number: the words count only within 40 characters."""
    word = rng.choice(WORDS)
    filler = "".join(rng.choice(FILLER) for _ in range(rng.randrange(30, 42 - min(len(word), 10))))
    return word + filler + rng.choice(FRAGMENTS)


def random_number(rng: random.Random) -> str:
    """Random digits of a candidate's length or near it, grouped at random, perhaps a prefix."""
    digits = "".join(
        rng.choice("0123456789") for _ in range(rng.choice((8, 8, 9, 11, 16, rng.randrange(1, 21))))
    )
    out = ""
    for i, digit in enumerate(digits):
        if i and rng.random() < 0.25:
            out += rng.choice(" .-")
        out += digit
    return rng.choice(("", "", "+", "00", "+47 ")) + out


def random_text(rng: random.Random) -> str:
    """A text of 1-7 pieces (identifiers, near-misses, words, random characters) and separators."""
    pieces: list[str] = []
    for _ in range(rng.randrange(1, 8)):
        kind = rng.randrange(12)
        if kind == 11:
            piece = random_number(rng)
        elif kind == 10:
            piece = word_then_number(rng)
        elif kind < 4:
            piece = rng.choice(FRAGMENTS)
        elif kind < 6:
            piece = mutate(rng.choice(FRAGMENTS), rng)
        elif kind < 7:
            piece = rng.choice(WORDS)
        else:
            piece = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 8)))
        pieces.append(piece)
        pieces.append(rng.choice(SEPARATORS))
    return "".join(pieces)
