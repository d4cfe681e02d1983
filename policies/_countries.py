"""ISO 3166-1 alpha-2 country codes, and the country groups the shipped packs name.

Kept as data here rather than adding a dependency: the policy language only
needs to know whether a two-letter code is assigned, and the EEA membership.
"""

from __future__ import annotations


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Officially assigned ISO 3166-1 alpha-2 codes (249).
ISO_3166_ALPHA2: frozenset[str] = _codes(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    YE YT
    ZA ZM ZW
    """
)

# The European Economic Area: the 27 EU member states plus Iceland,
# Liechtenstein and Norway.
EEA: frozenset[str] = _codes(
    """
    AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE
    IS LI NO
    """
)

# Countries with a European Commission adequacy decision under GDPR Art. 45
# (as of 2025). Canada's covers commercial organisations under PIPEDA and the
# United States' only organisations certified under the EU-US Data Privacy
# Framework: neither can be decided from a country code alone, so the shipped
# packs leave them to explicit rules with a legal basis.
EU_ADEQUACY: frozenset[str] = _codes("AD AR CA CH FO GB GG IL IM JE JP KR NZ US UY")
