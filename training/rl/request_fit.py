"""Does a greeting answer its request? Figures over (request, candidates) groups.

Each figure counts only the requests that ask for the thing: occasion fit over requests naming an
occasion, addressee fit over those naming an addressee, length fit over those with a length
constraint. ``wrong_occasion`` is the share of greetings (of occasion requests) that name an
incompatible occasion; ``repeat_runs`` the share with a character four or more times in a row;
``novelty`` the share that are not near-copies of a training greeting; ``distinct`` the mean share
of distinct texts among one request's candidates.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from generation.guards import REPEAT_LIMIT, CopyDetector, occasion_fit, wrong_occasions
from generation.requests import RequestSlots, length_fits, longest_repeat_run, names_addressee, occasions_named, parse_request


@dataclass
class Judged:
    request: str
    text: str
    occasion_fit: bool | None
    wrong_occasion: bool | None
    addressee_fit: bool | None
    length_fit: bool | None
    repeat_run: bool
    copy: bool | None


def judge_one(request: str, text: str, slots: RequestSlots | None = None, copies: CopyDetector | None = None) -> Judged:
    slots = slots if slots is not None else parse_request(request)
    has_occasion = slots.occasion is not None
    return Judged(
        request=request, text=text,
        occasion_fit=occasion_fit(slots.occasion, text) if has_occasion else None,
        wrong_occasion=bool(wrong_occasions(slots.occasion, occasions_named(text))) if has_occasion else None,
        addressee_fit=names_addressee(text, slots.addressee) if slots.addressee else None,
        length_fit=length_fits(text, slots.length) if slots.length is not None else None,
        repeat_run=longest_repeat_run(text) >= REPEAT_LIMIT,
        copy=copies.is_copy(text) if copies is not None and len(copies) else None,
    )


def _share(values: Sequence[bool | None]) -> tuple[float | None, int]:
    counted = [v for v in values if v is not None]
    return (sum(counted) / len(counted) if counted else None), len(counted)


def request_figures(groups: Sequence[tuple[str, Sequence[str]]], copies: CopyDetector | None = None) -> dict:
    """Figures over ``(request, candidate texts)`` groups; each figure with its count ``n_*``."""
    judged: list[Judged] = []
    distinct = []
    for request, texts in groups:
        slots = parse_request(request)
        judged += [judge_one(request, t, slots, copies) for t in texts]
        if texts:
            distinct.append(len(set(texts)) / len(texts))
    figures: dict = {"requests": len(groups), "greetings": len(judged)}
    for name in ("occasion_fit", "wrong_occasion", "addressee_fit", "length_fit", "repeat_run"):
        figures[name], figures[f"n_{name}"] = _share([getattr(j, name) for j in judged])
    copy_share, n_copy = _share([j.copy for j in judged])
    figures["novelty"] = None if copy_share is None else 1 - copy_share
    figures["n_novelty"] = n_copy
    figures["distinct"] = sum(distinct) / len(distinct) if distinct else None
    return figures
