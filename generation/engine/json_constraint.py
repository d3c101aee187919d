"""JSON-constrained decoding: a character-level state machine for a simple object schema.

Schema: ``{"type": "object", "properties": {...}, "required": [...]}`` with string (optional
``maxLength``), number, integer, boolean or enum properties; output is compact JSON, keys in schema
order, optional keys may be left out, strings without escapes or control characters, so every
accepted prefix stays one ``json.loads`` away from a valid document. A bare ``{"type": "object"}``
(OpenAI's ``json_object``) takes any JSON object up to ``MAX_DEPTH`` (``AnyObjectMachine``).
Each step allows the tokens whose every character the machine accepts and whose state can still
be closed within the tokens left, so ``max_tokens`` cannot cut a document short. Masks are
memoised per state; the states are listed in ``JsonMachine``.
"""
from __future__ import annotations

import json

import torch

from .sampler import InvalidRequestError


class SchemaError(InvalidRequestError):
    pass


MAX_NUMBER_CHARS = 16  # keeps a model from writing digits forever
DEFAULT_MAX_STRING = 512
DIGITS = "0123456789"


def _literal_values(spec: dict) -> list[str]:
    if "enum" in spec:
        values = spec["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaError("enum must be a non-empty list")
        for v in values:
            if not isinstance(v, (str, int, float, bool)) or v is None:
                raise SchemaError(f"enum values must be strings, numbers or booleans, got {v!r}")
            if isinstance(v, str) and ('"' in v or "\\" in v or any(ord(c) < 0x20 for c in v)):
                raise SchemaError(f"enum string {v!r} would need escaping")
        return [json.dumps(v, ensure_ascii=False) for v in values]
    return ["true", "false"]


def is_any_object(schema) -> bool:
    """``{"type": "object"}`` with no properties to follow: any object will do."""
    return (isinstance(schema, dict) and schema.get("type") == "object" and not schema.get("properties")
            and not schema.get("required") and set(schema) <= {"type", "properties", "required", "additionalProperties"})


def parse_schema(schema) -> list[dict]:
    """The schema's properties as [{name, kind, ...}] in order; SchemaError when unsupported."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise SchemaError('the schema must be a dict with "type": "object"')
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        raise SchemaError('the schema needs a non-empty "properties" dict')
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in props for r in required):
        raise SchemaError(f'"required" must list property names, got {required!r}')
    fields = []
    for name, spec in props.items():
        if not isinstance(name, str) or not name or '"' in name or "\\" in name:
            raise SchemaError(f"unsupported property name {name!r}")
        if not isinstance(spec, dict):
            raise SchemaError(f"property {name!r}: spec must be a dict")
        kind = "enum" if "enum" in spec else spec.get("type")
        field = {"name": name, "key": json.dumps(name, ensure_ascii=False), "required": name in required}
        if kind == "string":
            max_len = spec.get("maxLength", DEFAULT_MAX_STRING)
            if not isinstance(max_len, int) or max_len < 0:
                raise SchemaError(f"property {name!r}: maxLength must be a non-negative integer")
            field.update(kind="string", max_length=max_len)
        elif kind in ("number", "integer"):
            field.update(kind=kind)
        elif kind in ("boolean", "enum"):
            field.update(kind="literal", literals=_literal_values(spec))
        else:
            raise SchemaError(f"property {name!r}: unsupported type {kind!r} (string, number, integer, boolean, enum)")
        fields.append(field)
    return fields


# number grammar:  -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
_NUM_ACCEPTING = {"zero", "int", "frac", "exp"}


def _number_step(phase: str, ch: str, integer: bool) -> str | None:
    if phase == "start":
        return "minus" if ch == "-" else "zero" if ch == "0" else "int" if ch in DIGITS else None
    if phase == "minus":
        return "zero" if ch == "0" else "int" if ch in DIGITS else None
    if phase in ("zero", "int"):
        if phase == "int" and ch in DIGITS:
            return "int"
        if integer:
            return None
        return "dot" if ch == "." else "e" if ch in "eE" else None
    if phase in ("dot", "frac"):
        return "frac" if ch in DIGITS else ("e" if phase == "frac" and ch in "eE" else None)
    if phase == "e":
        return "esign" if ch in "+-" else "exp" if ch in DIGITS else None
    if phase in ("esign", "exp"):
        return "exp" if ch in DIGITS else None
    return None


class CharMachine:
    """A character-level state machine: subclasses define ``advance(state, ch)`` (None: refused)."""

    def advance_text(self, state: tuple, text: str):
        for ch in text:
            state = self.advance(state, ch)
            if state is None:
                return None
        return state

    def is_done(self, state: tuple) -> bool:
        return state[0] == "done"


class JsonMachine(CharMachine):
    """Objects of one flat schema (see the module docstring). States are plain tuples::

        ("start",)                     before "{"
        ("obj", i, first)              after "{" or a value; the next key is searched from property i
        ("key", i, prefix)             inside a key; it must complete one of the candidate names
        ("colon", j)                   after key j
        ("value", j)                   before value j
        ("str", j, length)             inside string value j
        ("num", j, phase, length)      inside number value j (phase: grammar position)
        ("lit", j, prefix)             inside a literal of j (boolean or enum, JSON encoded)
        ("done",)                      after the closing "}"
    """

    def __init__(self, schema):
        self.fields = parse_schema(schema)
        n = len(self.fields)
        # tail[i]: fewest characters that close the object from ("obj", i, first=False)
        self.tail = [0] * (n + 1)
        self.tail[n] = 1
        for i in range(n - 1, -1, -1):
            f = self.fields[i]
            self.tail[i] = self.tail[i + 1] + (1 + len(f["key"]) + 1 + self._min_value(i) if f["required"] else 0)

    def _min_value(self, j: int) -> int:
        f = self.fields[j]
        return {"string": 2, "number": 1, "integer": 1}.get(f["kind"]) or min(len(v) for v in f["literals"])

    def _key_candidates(self, i: int) -> list[int]:
        """Properties that may come next: the following ones up to the first required."""
        out = []
        for j in range(i, len(self.fields)):
            out.append(j)
            if self.fields[j]["required"]:
                break
        return out

    def _closable(self, i: int) -> bool:
        return all(not f["required"] for f in self.fields[i:])

    initial = ("start",)

    def advance(self, state: tuple, ch: str):
        """The state after ``ch``, or None when ``ch`` is not allowed."""
        kind = state[0]
        if kind == "start":
            return ("obj", 0, True) if ch == "{" else None
        if kind == "obj":
            _, i, first = state
            if ch == "}" and self._closable(i):
                return ("done",)
            if i < len(self.fields) and ch == ('"' if first else ","):
                return ("key", i, "") if first else ("keyq", i)
            return None
        if kind == "keyq":
            return ("key", state[1], "") if ch == '"' else None
        if kind == "key":
            _, i, prefix = state
            for j in self._key_candidates(i):
                name = self.fields[j]["name"]
                if ch == '"' and prefix == name:
                    return ("colon", j)
                if name.startswith(prefix + ch):
                    return ("key", i, prefix + ch)
            return None
        if kind == "colon":
            return ("value", state[1]) if ch == ":" else None
        if kind == "value":
            j = state[1]
            f = self.fields[j]
            if f["kind"] == "string":
                return ("str", j, 0) if ch == '"' else None
            if f["kind"] in ("number", "integer"):
                phase = _number_step("start", ch, f["kind"] == "integer")
                return ("num", j, phase, 1) if phase else None
            return self.advance(("lit", j, ""), ch)
        if kind == "str":
            _, j, length = state
            if ch == '"':
                return ("obj", j + 1, False)
            if ch == "\\" or ord(ch) < 0x20 or length >= self.fields[j]["max_length"]:
                return None
            return ("str", j, length + 1)
        if kind == "num":
            _, j, phase, length = state
            nxt = _number_step(phase, ch, self.fields[j]["kind"] == "integer")
            if nxt and length < MAX_NUMBER_CHARS:
                return ("num", j, nxt, length + 1)
            if phase in _NUM_ACCEPTING:  # the number ended: this char belongs to the object
                return self.advance(("obj", j + 1, False), ch)
            return None
        if kind == "lit":
            _, j, prefix = state
            literals = self.fields[j]["literals"]
            if prefix in literals and not any(v.startswith(prefix + ch) for v in literals):
                return self.advance(("obj", j + 1, False), ch)
            return ("lit", j, prefix + ch) if any(v.startswith(prefix + ch) for v in literals) else None
        return None  # "done" takes nothing more

    def min_to_finish(self, state: tuple) -> int:
        """Fewest characters that complete the document from ``state``."""
        kind = state[0]
        if kind == "done":
            return 0
        if kind == "start":
            return 1 + self.min_to_finish(("obj", 0, True))
        if kind == "obj":
            _, i, first = state
            if first:  # after "{": the first required key (if any) is written without a comma
                req = [k for k in range(i, len(self.fields)) if self.fields[k]["required"]]
                return 1 if not req else self._first_key_cost(req[0]) + self.tail[req[0] + 1]
            return self.tail[i]
        if kind == "keyq":
            return self.min_to_finish(("key", state[1], "")) + 1
        if kind == "key":
            _, i, prefix = state
            best = None
            for j in self._key_candidates(i):
                name = self.fields[j]["name"]
                if name.startswith(prefix):
                    cost = len(name) - len(prefix) + 2 + self._min_value(j) + self.tail[j + 1]
                    best = cost if best is None else min(best, cost)
            return best if best is not None else 10**9
        if kind == "colon":
            return 1 + self._min_value(state[1]) + self.tail[state[1] + 1]
        if kind == "value":
            return self._min_value(state[1]) + self.tail[state[1] + 1]
        if kind == "str":
            return 1 + self.tail[state[1] + 1]
        if kind == "num":
            return (0 if state[2] in _NUM_ACCEPTING else 1) + self.tail[state[1] + 1]
        if kind == "lit":
            _, j, prefix = state
            rest = min(len(v) - len(prefix) for v in self.fields[j]["literals"] if v.startswith(prefix))
            return rest + self.tail[j + 1]
        return 10**9

    def _first_key_cost(self, j: int) -> int:
        return len(self.fields[j]["key"]) + 1 + self._min_value(j)

    def needed_chars(self) -> set[str]:
        """Characters that closing any document needs (budget forcing writes them one per token)."""
        needed = set('{}":,') | set(DIGITS)
        for f in self.fields:
            needed |= set(f["key"])
            for lit in f.get("literals", []):
                needed |= set(lit)
        return needed

    def budget_margin(self, longest_token: int) -> int:
        # one token can raise the fewest-characters-to-close by at most the cost of the optional
        # fields it opens
        return longest_token + sum(len(f["key"]) + 3 + self._min_value(j) for j, f in enumerate(self.fields))


MAX_DEPTH = 8
LITERALS = ("true", "false", "null")
# fewest characters that finish the current value and reach "after a value" at the same level
_IN_COST = {"obj_first": 0, "obj_key": 4, "key": 3, "colon": 2, "value": 1, "arr_first": 0, "after": 0, "str": 1}


class AnyObjectMachine(CharMachine):
    """Any JSON object. States: ("start",), ("done",), ("in", stack, where), ("num", stack, phase,
    length), ("lit", stack, prefix); ``stack`` holds "o"/"a" per open container, ``where`` is one
    of _IN_COST's keys. Every accepted prefix is one closing suffix away from valid JSON."""

    initial = ("start",)

    def _value_start(self, stack: tuple, ch: str):
        if ch in "{[":
            if len(stack) >= MAX_DEPTH:
                return None
            return ("in", stack + ("o",), "obj_first") if ch == "{" else ("in", stack + ("a",), "arr_first")
        if ch == '"':
            return ("in", stack, "str")
        phase = _number_step("start", ch, False)
        if phase:
            return ("num", stack, phase, 1)
        if any(v.startswith(ch) for v in LITERALS):
            return ("lit", stack, ch)
        return None

    @staticmethod
    def _close(stack: tuple):
        return ("in", stack[:-1], "after") if len(stack) > 1 else ("done",)

    def advance(self, state: tuple, ch: str):
        kind = state[0]
        if kind == "start":
            return ("in", ("o",), "obj_first") if ch == "{" else None
        if kind == "in":
            _, stack, where = state
            if where in ("key", "str"):
                if ch == '"':
                    return ("in", stack, "colon" if where == "key" else "after")
                return None if ch == "\\" or ord(ch) < 0x20 else state
            if where in ("obj_first", "obj_key"):
                if ch == '"':
                    return ("in", stack, "key")
                return self._close(stack) if ch == "}" and where == "obj_first" else None
            if where == "colon":
                return ("in", stack, "value") if ch == ":" else None
            if where == "value":
                return self._value_start(stack, ch)
            if where == "arr_first":
                return self._close(stack) if ch == "]" else self._value_start(stack, ch)
            if where == "after":
                top = stack[-1]
                if ch == ",":
                    return ("in", stack, "obj_key" if top == "o" else "value")
                return self._close(stack) if ch == ("}" if top == "o" else "]") else None
        if kind == "num":
            _, stack, phase, length = state
            nxt = _number_step(phase, ch, False)
            if nxt and length < MAX_NUMBER_CHARS:
                return ("num", stack, nxt, length + 1)
            return self.advance(("in", stack, "after"), ch) if phase in _NUM_ACCEPTING else None
        if kind == "lit":
            _, stack, prefix = state
            word = prefix + ch
            if word in LITERALS:
                return ("in", stack, "after")
            return ("lit", stack, word) if any(v.startswith(word) for v in LITERALS) else None
        return None

    def min_to_finish(self, state: tuple) -> int:
        kind = state[0]
        if kind == "done":
            return 0
        if kind == "start":
            return 2
        stack = state[1]
        if kind == "in":
            return _IN_COST[state[2]] + len(stack)
        if kind == "num":
            return (0 if state[2] in _NUM_ACCEPTING else 1) + len(stack)
        prefix = state[2]
        return min(len(v) - len(prefix) for v in LITERALS if v.startswith(prefix)) + len(stack)

    def needed_chars(self) -> set[str]:
        return set('{}[]":,') | set(DIGITS) | set("".join(LITERALS))

    def budget_margin(self, longest_token: int) -> int:
        # each character can open a container (one closer more) or a key (4 more)
        return 4 * longest_token + 4


def make_machine(schema):
    return AnyObjectMachine() if is_any_object(schema) else JsonMachine(schema)


def token_strings(tokenizer, vocab_size: int) -> list[str | None]:
    """Text of each token id alone; None for special tokens and pieces of a character."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out: list[str | None] = []
    for i in range(vocab_size):
        if i in special or i >= len(tokenizer):
            out.append(None)
            continue
        text = tokenizer.decode([i])
        out.append(text if text and "\ufffd" not in text else None)
    return out


class JsonConstraint:
    """Vocabulary masks for one schema over one tokenizer (shared by all requests with that schema)."""

    def __init__(self, schema, strings: list[str | None], eos_token_id: int | None):
        self.machine = make_machine(schema)
        self.strings = strings
        self.eos_token_id = eos_token_id
        self._masks: dict[tuple, torch.Tensor] = {}
        self._check_spellable()
        # beyond this margin from the token limit no token needs checking
        longest = max((len(s) for s in strings if s is not None), default=1)
        self._margin = self.machine.budget_margin(longest)

    def _check_spellable(self) -> None:
        """Budget forcing closes documents one character per token: every needed character needs a token."""
        singles = {s for s in self.strings if s is not None and len(s) == 1}
        missing = sorted(self.machine.needed_chars() - singles)
        if missing:
            raise SchemaError(f"the vocabulary has no single-character token for {''.join(missing)!r}")

    def mask(self, state: tuple) -> torch.Tensor:
        """Bool [V]: tokens allowed after ``state`` (ignoring the token budget)."""
        found = self._masks.get(state)
        if found is None:
            allowed = [s is not None and self.machine.advance_text(state, s) is not None for s in self.strings]
            found = torch.tensor(allowed, dtype=torch.bool)
            if self.machine.is_done(state) and self.eos_token_id is not None:
                found[self.eos_token_id] = True
            self._masks[state] = found
        return found

    def budget_mask(self, state: tuple, tokens_left_after: int) -> torch.Tensor:
        """``mask(state)`` further limited to tokens after which the document can still close in time."""
        base = self.mask(state)
        if self.machine.min_to_finish(state) + self._margin <= tokens_left_after:
            return base  # far from the limit: every allowed token keeps a way out
        out = base.clone()
        for t in base.nonzero().flatten().tolist():
            s = self.strings[t]
            nxt = self.machine.advance_text(state, s) if s is not None else ("done",)
            if nxt is None or self.machine.min_to_finish(nxt) > tokens_left_after:
                out[t] = False
        return out
