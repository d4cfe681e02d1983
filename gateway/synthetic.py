"""Synthetic `norway-traffic` events for the demo, tests and benchmarks.

National ids are valid *synthetic* fødselsnummer (month + 80, the form
Norway's synthetic test population uses, with both mod-11 check digits
right), so they look and check like real ones but belong to no one. Plates
are random two letters and five digits. Nothing here comes from a register.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from stdnum.no import fodselsnummer as stdnum_fnr

REGIONS = ("Oslo", "Vestland", "Trøndelag", "Rogaland", "Nordland", "Troms", "Agder", "Innlandet")
_PLATE_LETTERS = "ABCDEFGHJKLNPRSTUVXYZ"
_NOTES = (
    "Fart målt ved bomstasjon.",
    "Sjåføren ringte inn fra {phone}, se sak.",
    "Eier oppgitt med fnr {fnr} på skiltet.",
    "Kontakt: {email}",
    "",
)


def synthetic_fodselsnummer(rng: random.Random) -> str:
    """A fødselsnummer of the synthetic population (month + 80) with valid check digits."""
    while True:
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 55))
        individual = rng.randrange(0, 500) if born.year < 2000 else rng.randrange(500, 1000)
        base = f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}{individual:03d}"
        k1 = stdnum_fnr.calc_check_digit1(base)
        if len(k1) != 1:
            continue
        k2 = stdnum_fnr.calc_check_digit2(base + k1)
        if len(k2) != 1:
            continue
        return base + k1 + k2


def synthetic_plate(rng: random.Random) -> str:
    """A Norwegian-looking plate: two letters, a space, five digits."""
    return (
        f"{rng.choice(_PLATE_LETTERS)}{rng.choice(_PLATE_LETTERS)} {rng.randrange(10000, 100000)}"
    )


class TrafficGenerator:
    """Deterministic (per seed) stream of norway-traffic events with event ids.

    `disorder_s` shifts event times back by up to that many seconds, so the
    processor's out-of-orderness bound has work to do.
    """

    def __init__(
        self, seed: int = 7, *, disorder_s: float = 4.0, start: dt.datetime | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.disorder_s = disorder_s
        self.start = start
        self.count = 0
        self._drivers = [synthetic_fodselsnummer(self.rng) for _ in range(200)]
        self._plates = [synthetic_plate(self.rng) for _ in range(200)]
        self._run = uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]

    def event(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """One event; `now` is its nominal event time (default: the wall clock)."""
        rng = self.rng
        moment = now or self.start or dt.datetime.now(dt.UTC)
        moment -= dt.timedelta(seconds=rng.random() * self.disorder_s)
        driver = rng.randrange(len(self._drivers))
        note = rng.choice(_NOTES).format(
            phone=f"+47 9{rng.randrange(1000000, 9999999)}",
            fnr=self._drivers[driver],
            email=f"sjafor{driver}@example.no",
        )
        self.count += 1
        event: dict[str, Any] = {
            "event_id": f"{self._run}-{self.count}",
            "region": rng.choice(REGIONS),
            "speed": round(rng.uniform(30.0, 130.0), 1),
            "plate": self._plates[driver],
            "driver_id": self._drivers[driver],
            "event_time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if note:
            event["note"] = note
        return event

    def batch(self, size: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        return [self.event(now) for _ in range(size)]
