"""Request slots: parse a free-text Chinese greeting request (祝福语请求) into slots, and check a
greeting against them. Pure Python, no Django.

The vocabulary is the one of notes/SLOTS_SPEC.md: 53 canonical occasions, 42 canonical addressees
(each in one relationship group), 8 tones and a length spec. The package, bottom up: `lexicon`
(the tables, as data), `slots` (RequestSlots, LengthSpec), `matching` (longest match first, so
结婚纪念日 beats 结婚 and 母亲节 is read as an occasion before 母亲 can be an addressee),
`form_values` (normalise_slot), `parse` (parse_request) and `checks` (what a greeting names).
This module is the interface the rest of the code imports.
"""
from generation.requests.checks import ages_named, length_fits, longest_repeat_run, names_addressee, occasions_named
from generation.requests.form_values import normalise_slot
from generation.requests.lexicon import (ADDRESSEE_NAMES, ADDRESSEES, GREETING_OCCASION_WORDS, LENGTH_KINDS, OCCASIONS,
                                         RELATIONSHIP_GROUPS, RELATIONSHIP_OF, TONES, WEAK_OCCASIONS)
from generation.requests.matching import occasions_compatible
from generation.requests.parse import parse_request
from generation.requests.slots import LengthSpec, RequestSlots, UnknownSlotValue

__all__ = [
    "ADDRESSEES",
    "ages_named",
    "ADDRESSEE_NAMES",
    "GREETING_OCCASION_WORDS",
    "LENGTH_KINDS",
    "LengthSpec",
    "OCCASIONS",
    "RELATIONSHIP_GROUPS",
    "RELATIONSHIP_OF",
    "RequestSlots",
    "TONES",
    "UnknownSlotValue",
    "WEAK_OCCASIONS",
    "length_fits",
    "longest_repeat_run",
    "names_addressee",
    "normalise_slot",
    "occasions_compatible",
    "occasions_named",
    "parse_request",
]
