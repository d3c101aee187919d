"""The matching under parse_request: longest match first over the lexicon (结婚纪念日 beats 结婚;
母亲节 is an occasion before 母亲 can be an addressee), each slot's reader, and the details left over."""
from __future__ import annotations

import re

from generation.requests.lexicon import (ADDRESSEE_WORDS, COMPATIBLE_PAIRS, FILLER_WORDS, GREETING_OCCASION_WORDS,
                                         LENGTH_PRIORITY, LENGTH_WORDS, OCCASION_WORDS, PARTNER_WORDS, TONE_WORDS,
                                         WEAK_OCCASIONS, WEAK_WORDS)
from generation.requests.slots import LengthSpec


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_NUM = r"(\d+|[零〇一二两三四五六七八九十百]+)"
_CHARS_RE = re.compile(_NUM + r"\s*个?(?:汉)?字")
_COUNT_RE = re.compile(_NUM + r"\s*(个|条|段|则|首|句|篇|份|版|种|组)(?!字)")
_AGE_RE = re.compile(_NUM + r"\s*(周岁生日|岁生日|岁大寿|岁寿辰|大寿|寿辰|寿诞|华诞|岁|生日|寿)")
_SPLIT_RE = re.compile(r"[\s，,。.！!？?；;：:、~～()（）\[\]【】“”\"'‘’《》<>…\-—/]+")


def chinese_number(text: str) -> int | None:
    """'12' -> 12, '七十' -> 70, '十八' -> 18, '一百' -> 100, '八十五' -> 85; None if unreadable."""
    if text.isdigit():
        return int(text)
    total, current = 0, 0
    for ch in text:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


def _index(table: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """(word, canonical) pairs, longest word first, each canonical matching itself."""
    pairs = {(c, c) for c in table}
    pairs |= {(w, c) for c, words in table.items() for w in words}
    return sorted(pairs, key=lambda p: (-len(p[0]), p[0], p[1]))


_OCCASION_INDEX = _index(OCCASION_WORDS)
_ADDRESSEE_INDEX = _index(ADDRESSEE_WORDS) + [(w, "") for w in PARTNER_WORDS]
_ADDRESSEE_INDEX.sort(key=lambda p: -len(p[0]))
_TONE_INDEX = _index(TONE_WORDS)
_LENGTH_INDEX = sorted(((w, k) for k, words in LENGTH_WORDS.items() for w in words), key=lambda p: -len(p[0]))
_GREETING_OCCASION_INDEX = _index(GREETING_OCCASION_WORDS)
_GREETING_OCCASIONS_OF: dict[str, set[str]] = {}
for _word, _occasion in _GREETING_OCCASION_INDEX:
    _GREETING_OCCASIONS_OF.setdefault(_word, set()).add(_occasion)


def _find(text: str, index: list[tuple[str, str]], mask: list[bool]) -> list[tuple[int, int, str, str]]:
    """Non-overlapping matches (start, end, word, canonical), longest words claim text first.

    `mask` marks characters already claimed by another slot; it is updated in place."""
    found = []
    lowered = text.lower()
    for word, canonical in index:
        w = word.lower()
        start = lowered.find(w)
        while start != -1:
            end = start + len(w)
            if not any(mask[start:end]):
                found.append((start, end, word, canonical))
                for i in range(start, end):
                    mask[i] = True
            start = lowered.find(w, start + 1)
    return sorted(found)


def _claim(mask: list[bool], start: int, end: int) -> None:
    for i in range(start, end):
        mask[i] = True


_ANNIVERSARY_RE = re.compile(r"结婚\s*" + r"(\d+|[一二两三四五六七八九十百]+)" + r"\s*(周年|年纪念)")
# An occasion word followed by a span of time tells since when, not what to greet (入职才一年, 结婚八年了).
_DURATION_AFTER_RE = re.compile(r"(才|已经|已|都|快|刚|刚好)?(\d+|[一二两三四五六七八九十百半几]+)\s*个?多?(年|月|天|周(?!年)|星期)")
# A passed exam (考研上岸了, 考公成功) is the 录取 occasion, not the exam itself.
_PASSED_RE = re.compile(r"(上岸|考上|录取|通过)了|被录取|录取通知|(考研|考公|考编|高考|中考|考试)成功")
_EXAM_OCCASIONS = frozenset({"高考", "中考", "考研", "考试"})


# 开了家火锅店 opens a shop; 离开了家 does not.
_OPENED_SHOP_RE = re.compile(r"开了一?家" + r"[^，,。；;！!？?\s]{0,4}?(店|馆|公司|工作室|餐厅)")


def _opened_shops(text: str, mask: list[bool]) -> list[tuple[int, int, str, str]]:
    found = []
    for m in _OPENED_SHOP_RE.finditer(text):
        if not any(mask[m.start():m.end()]):
            found.append((m.start(), m.start() + 3, text[m.start():m.start() + 3], "开业"))
            _claim(mask, m.start(), m.start() + 3)
    return found


def _is_duration(text: str, match: tuple[int, int, str, str]) -> bool:
    if match[3] == "宝宝出生":
        return False  # 怀孕八个月 counts down to the birth
    return bool(_DURATION_AFTER_RE.match(text, match[1]))


def _pick_occasion(text: str, matches: list[tuple[int, int, str, str]]) -> str | None:
    if _ANNIVERSARY_RE.search(text):
        return "结婚纪念日"
    named = [m for m in matches if not _is_duration(text, m)]
    if matches and not named:  # only spans of time: 结婚十年了 is an anniversary, 毕业十年聚会 a reunion
        return "结婚纪念日" if any(m[3] == "结婚" for m in matches) else None
    strong = [m for m in named if m[3] not in WEAK_OCCASIONS and m[2] not in WEAK_WORDS]
    chosen = strong or named
    if not chosen:
        return None
    if chosen[0][3] in _EXAM_OCCASIONS and _PASSED_RE.search(text):
        return "录取"
    return chosen[0][3]


def _parse_length(text: str, mask: list[bool]) -> LengthSpec | None:
    found: dict[str, LengthSpec] = {}
    for m in _CHARS_RE.finditer(text):
        n = chinese_number(m.group(1))
        if n and not any(mask[m.start():m.end()]):
            _claim(mask, m.start(), m.end())
            found.setdefault("four_char" if n == 4 else "chars", LengthSpec("four_char") if n == 4 else LengthSpec("chars", n))
    for start, _end, _word, kind in _find(text, _LENGTH_INDEX, mask):
        if kind == "long" and text[max(0, start - 1):start] == "很":
            continue  # 写很长的评语 tells a story, it asks for no length
        found.setdefault(kind, LengthSpec(kind))
    for kind in LENGTH_PRIORITY:
        if kind in found:
            return found[kind]
    return None


def _parse_count(text: str, mask: list[bool]) -> int | None:
    for m in _COUNT_RE.finditer(text):
        if any(mask[m.start():m.end()]):
            continue
        n = chinese_number(m.group(1))
        if n is None or n > 100:
            continue
        if m.group(2) in ("句", "段") and n == 1:
            continue  # 一句 is a length and 写一段 a way of speaking, not a count
        if re.fullmatch(r"[零〇一二两三四五六七八九]{2,}", m.group(1)):
            continue  # 两三句 is a rough size, not a number of greetings
        if m.group(2) in _COUNTED_ONLY_WITH_VERB and not _asks_for_count(text, m):
            continue  # 两个孩子, 八个月, 二十个实习生: the number counts something else
        if n == 1 and not re.search(r"\d|创作|生成|写|来", text[max(0, m.start() - 2):m.start() + 1]):
            continue  # 一个 inside a phrase (一个叫团子的猫) is no count
        _claim(mask, m.start(), m.end())
        return n
    return None


_COUNTED_ONLY_WITH_VERB = frozenset({"个", "种", "份", "组"})
_COUNT_VERB_BEFORE_RE = re.compile(r"(写|来|创作|生成|要|需要|给我|出|准备|整)\s*$")
_COUNT_NOUN_AFTER_RE = re.compile(r"\s*(\d|[一二两三四五六七八九十]+个?字|祝福|文案|句子|版本|短信|贺词|寄语|不同|$|[，,。.！!？?\s])")


def _asks_for_count(text: str, m: re.Match) -> bool:
    """写3个 / 3个祝福 / 1个12字 ask for that many greetings; 两个孩子的妈 does not."""
    return bool(_COUNT_VERB_BEFORE_RE.search(text[max(0, m.start() - 3):m.start()])
                or _COUNT_NOUN_AFTER_RE.match(text, m.end()))


def _parse_age(text: str, mask: list[bool]) -> int | None:
    for m in _AGE_RE.finditer(text):
        n = chinese_number(m.group(1))
        if n is None or not 1 <= n <= 130:
            continue
        _claim(mask, m.start(), m.start() + len(m.group(1)) + (1 if m.group(2).startswith("岁") else 0))
        return n
    return None


def occasions_compatible(a: str, b: str) -> bool:
    """Whether a greeting for occasion a may name occasion b (and the other way round)."""
    return a == b or frozenset((a, b)) in COMPATIBLE_PAIRS


def _another_occasion(canonical: str, chosen: str | None) -> bool:
    if chosen is None or canonical == chosen or occasions_compatible(canonical, chosen):
        return False
    return not (chosen == "结婚纪念日" and canonical == "结婚") and not (chosen == "录取" and canonical in _EXAM_OCCASIONS)


def _claim_words(text: str, mask: list[bool], words: tuple[str, ...]) -> None:
    for word in words:
        for m in re.finditer(re.escape(word), text):
            _claim(mask, m.start(), m.end())


_CLAUSE = r"[^，,。.；;！!？?\s]"
# The speaker describing themself (我是幼儿园老师, 作为班主任) names no addressee.
_SPEAKER_BEFORE_RE = re.compile(r"(我是|我也是|作为|身为|我当)" + _CLAUSE + r"{0,4}$")
# 给/对/送给 ... mark who the greeting is for when the request names several people.
# 给X: X is the addressee when the greeting is what follows (给老师的, 给员工写, 对员工说); 给X送点心 is a story.
_TO_BEFORE_RE = re.compile(r"(给|对|送给|写给|为|致)" + _CLAUSE + r"{0,8}$")
_TO_AFTER_RE = re.compile(r"们?(的|写|发|说|拜年|祝|敬|打气|加油|一句|几句|[，,。.；;！!？?\s]|$)")
_SELF_BEFORE_RE = re.compile(r"((给|对|为|送给|写给)我?|祝" + _CLAUSE + r"{0,4})$")
# 感谢X, 恭喜X: X is the one greeted whatever follows.
_OBJECT_BEFORE_RE = re.compile(r"(感谢|谢谢|恭喜|祝贺|欢送|夸夸|夸|安慰|鼓励|哄)" + _CLAUSE + r"{0,6}$")
_PARENT_PAIR_GLUE = ("和", "与", "跟", "、", "&", "and", "及")
# Common surnames that rarely end another word before a title (not 文 of 语文, 谢 of 感谢, 顾 of 照顾).
SURNAMES = frozenset("王李张刘陈杨赵黄周吴徐胡朱林何郭罗梁郑韩唐冯董程曹袁邓傅沈彭吕苏卢蒋蔡魏薛潘杜戴钟汪姜姚谭廖"
                     "邹陆郝孔崔邱秦邵孟雷尹黎龚")


def _surname_before(text: str, match: tuple[int, int, str, str], mask: list[bool]) -> bool:
    start = match[0]
    return start > 0 and text[start - 1] in SURNAMES and not mask[start - 1]


def _surnamed_people(text: str, matches: list, mask: list[bool]) -> list[str]:
    """王阿姨 and 张教授 keep their surname in the details (the canonical 长辈/老师 loses it)."""
    people = []
    for m in matches:
        if _surname_before(text, m, mask) and m[3]:
            people.append(text[m[0] - 1] + m[2])
            _claim(mask, m[0] - 1, m[0])
    return people


def _is_speaker_or_description(text: str, match: tuple[int, int, str, str]) -> bool:
    start, end, word, _c = match
    before = text[max(0, start - 7):start]
    if _SPEAKER_BEFORE_RE.search(before):
        return True
    if before.endswith(("当", "做")) and text[end:end + 1] == "的":
        return True  # 给当护士的老婆: the 护士 describes the wife
    # 李姐, 王哥: a single kin character after a surname is a colleague or acquaintance, not a sibling.
    return len(word) == 1 and start > 0 and text[start - 1] in SURNAMES


def _is_marked(text: str, match: tuple[int, int, str, str]) -> bool:
    start, end = match[0], match[1]
    before = text[max(0, start - 10):start]
    if _OBJECT_BEFORE_RE.search(before):
        return True
    if match[3] == "自己":  # 给自己过儿童节, 祝自己考试顺利: for oneself whatever follows
        return bool(_SELF_BEFORE_RE.search(before))
    return bool(_TO_BEFORE_RE.search(before) and _TO_AFTER_RE.match(text, end))


def _in_apposition(text: str, first: tuple, second: tuple) -> bool:
    gap = text[first[1]:second[0]]
    return gap == "" or (len(gap) == 1 and gap in SURNAMES)  # 护士妹妹们, 邻居王阿姨


def _marked_people(text: str, people: list) -> list:
    """The marked matches; in 给邻居王阿姨的 the marked 阿姨 stands in apposition to 邻居, which comes first."""
    marked = {i for i, m in enumerate(people) if _is_marked(text, m)}
    for i in sorted(marked, reverse=True):
        j = i
        while j > 0 and _in_apposition(text, people[j - 1], people[j]):
            j -= 1
            marked.add(j)
    return [m for i, m in enumerate(people) if i in marked]


def _parent_pair(text: str, matches: list) -> tuple[int, int, str, str] | None:
    """妈妈和爸爸, mom和dad -> one 父母 match."""
    for a, b in zip(matches, matches[1:]):
        if {a[3], b[3]} == {"妈妈", "爸爸"} and text[a[1]:b[0]].strip() in _PARENT_PAIR_GLUE:
            return (a[0], b[1], text[a[0]:b[1]], "父母")
    return None


def _pick_addressee(text: str, matches: list) -> tuple[int, int, str, str] | None:
    people = [m for m in matches if not _is_speaker_or_description(text, m)]
    # 自己 is the addressee when marked (给自己, 祝自己); 带自己包的包子 only says who made them.
    people = [m for m in people if m[3] != "自己" or _is_marked(text, m)]
    pair = _parent_pair(text, people)
    if pair:
        return pair
    named = [m for m in people if m[3]] or people  # 亲爱的妈妈 -> 妈妈
    marked = _marked_people(text, named)
    return (marked or named or [None])[0]


_NEGATION_BEFORE_RE = re.compile(r"(不要太|不用太|别太|不太|不要|不用|不必|别|不)$")
_TONE_AND_LENGTH_WORDS = ("致辞",)  # a speech is both formal and long


def _parse_tone(text: str, mask: list[bool]) -> str | None:
    tone_mask = list(mask)
    for word in _TONE_AND_LENGTH_WORDS:
        for m in re.finditer(word, text):
            if all(mask[m.start():m.end()]):
                tone_mask[m.start():m.end()] = [False] * (m.end() - m.start())
    matches = _find(text, _TONE_INDEX, tone_mask)
    for i, claimed in enumerate(tone_mask):
        mask[i] = mask[i] or claimed
    # 不要太肉麻 asks for less of that tone, not for it.
    wanted = [m for m in matches if not _NEGATION_BEFORE_RE.search(text[max(0, m[0] - 3):m[0]])]
    # 致辞 says 正式 only when no tone word is asked for (伴郎致辞，要好笑 -> 幽默).
    explicit = [m for m in wanted if m[2] not in _TONE_AND_LENGTH_WORDS]
    return (explicit or wanted or [(0, 0, "", None)])[0][3]


# Words whose characters are fillers elsewhere (他 in 吉他, 和 in 温和): kept whole in the details.
PROTECTED_WORDS: tuple[str, ...] = (
    "吉他", "其他", "点心", "甜点", "温和", "暖和", "和平", "现在", "实在", "自在", "正在", "好吃", "好看",
    "好玩", "爱好", "发展", "发言", "回来", "出来", "起来", "过来", "原来", "未来", "后来", "将来", "聚会",
    "年会", "晚会", "学会", "机会", "一起住", "个性",
)


def _remove_fillers(rest: str) -> str:
    keep = [False] * len(rest)
    for word in PROTECTED_WORDS:
        for m in re.finditer(word, rest):
            keep[m.start():m.end()] = [True] * len(word)
    for word in _FILLERS:
        start = rest.find(word)
        while start != -1:
            end = start + len(word)
            if not any(keep[start:end]):
                rest = rest[:start] + "\x00" * len(word) + rest[end:]
            start = rest.find(word, start + 1)
    return rest


def _details(text: str, mask: list[bool]) -> str:
    """The unclaimed rest of the request minus filler words, as '，'-joined segments."""
    rest = "".join("\x00" if claimed else ch for ch, claimed in zip(text, mask))
    rest = _remove_fillers(rest)
    segments = [s.strip() for s in _SPLIT_RE.split(rest.replace("\x00", " "))]
    return "，".join(s for s in segments if len(s) >= 2 or (s and not s.isascii() and s not in "之在是与及"))


_FILLERS = sorted(FILLER_WORDS, key=len, reverse=True)
