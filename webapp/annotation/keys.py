"""One keyboard map for every rating page: a key means one thing wherever it works.

Pointwise pages use G/B for Good/Bad and 1-3 for the rubric; pairwise pages name their sides
left and right (L/R, or the arrow keys), so B never means both "Bad" and "B better". Both
pages show the whole map (annotate.html), and annotate.js reads the keys from the buttons'
data-key attributes, which the templates fill from here."""
from dataclasses import dataclass

POINTWISE, PAIRWISE, BOTH = "pointwise", "pairwise", "both"


@dataclass(frozen=True)
class Key:
    keys: tuple[str, ...]   # KeyboardEvent.key values, lower case for letters
    shown: str              # how the help table writes them
    meaning: str
    page: str               # POINTWISE, PAIRWISE or BOTH
    action: str = ""        # the button value it presses, when it presses one


KEY_MAP = (
    Key(("1", "2", "3"), "1 2 3", "给当前评分项打分，然后下一项 rate the focused rubric part, then move on", POINTWISE),
    Key(("arrowup", "arrowdown"), "↑ ↓ / Tab", "在评分项之间移动 move between rubric parts", POINTWISE),
    Key(("delete",), "Delete", "清空评分表（评分可不填） clear the rubric (it is optional)", POINTWISE),
    Key(("g",), "G", "好，提交 Good, and submit", POINTWISE, "good"),
    Key(("b",), "B", "不好，提交 Bad, and submit", POINTWISE, "bad"),
    Key(("l", "arrowleft"), "L / ←", "左边更好 the left one is better", PAIRWISE, "a"),
    Key(("r", "arrowright"), "R / →", "右边更好 the right one is better", PAIRWISE, "b"),
    Key(("t",), "T", "一样好 tie", PAIRWISE, "tie"),
    Key(("x",), "X", "都不好 both bad", PAIRWISE, "both_bad"),
    Key(("c",), "C", "写备注（Esc 离开） write a comment (Esc leaves it)", BOTH),
    Key(("s",), "S", "跳过 skip", BOTH),
    Key(("u",), "U", "撤回上一条 undo your last rating", BOTH),
)


def keys_for_action(action: str) -> Key:
    return next(key for key in KEY_MAP if key.action == action)


def button_keys() -> dict[str, dict[str, str]]:
    """For the templates: each button value's main key and its alternative (e.g. an arrow key)."""
    return {key.action: {"key": key.keys[0], "alt": key.keys[1] if len(key.keys) > 1 else "",
                         "shown": key.shown} for key in KEY_MAP if key.action}
