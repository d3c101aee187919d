"""generation.requests: request slots, greeting checks and form values (pure Python, no Django)."""

import pytest

from generation.requests import (
    ADDRESSEES, OCCASIONS, RELATIONSHIP_OF, TONES, LengthSpec, UnknownSlotValue, length_fits,
    longest_repeat_run, names_addressee, normalise_slot, occasions_compatible, occasions_named,
    parse_request,
)


def test_canonical_tables_have_the_spec_sizes():
    assert len(OCCASIONS) == len(set(OCCASIONS)) == 53
    assert len(ADDRESSEES) == len(set(ADDRESSEES)) == 42
    assert len(TONES) == 8
    assert set(RELATIONSHIP_OF) == set(ADDRESSEES)


@pytest.mark.parametrize("text, occasion, addressee, tone, length, count, age", [
    ("创作1个12字祝老板元宵节快乐的句子", "元宵", "老板", None, "12字", 1, None),
    ("为给数学老师创作带有古文元素的元宵节祝福语", "元宵", "老师", "古风", None, None, None),
    ("七十生日祝福语", "生日", None, None, None, None, 70),
    ("古风新年祝福语", "春节", None, "古风", None, None, None),
    ("同事升职祝贺 简短", "升职", "同事", None, "简短", None, None),
    ("给我的猫写一句中秋祝福", "中秋", "猫", None, "一句", None, None),
    ("祝爷爷八十大寿", "生日", "爷爷", None, None, None, 80),
    ("兔年祝福语", "春节", None, None, None, None, None),
    ("祝自己考试顺利的文案", "考试", "自己", None, None, None, None),
    ("结婚纪念日给老婆的话", "结婚纪念日", "老婆", None, None, None, None),
    ("母亲节祝福语", "母亲节", "妈妈", None, None, None, None),
    ("创作三条搞笑的国庆文案", "国庆", None, "幽默", None, 3, None),
    ("8个字恭祝满月", "满月", None, None, "8字", None, None),
    ("宝宝一岁生日", "周岁", "宝宝", None, None, None, None),
    ("给领导的四字新年祝福", "春节", "领导", None, "四字", None, None),
])
def test_parse_request_examples(text, occasion, addressee, tone, length, count, age):
    slots = parse_request(text)
    assert slots.occasion == occasion
    assert slots.addressee == addressee
    assert slots.tone == tone
    assert (slots.length.render() if slots.length else None) == length
    assert slots.count == count
    assert slots.age == age


def test_long_request_keeps_names_in_details_and_negated_length_is_short():
    slots = parse_request("我闺蜜小雨下个月结婚，她老公是她大学同学，我们一起养过一只叫团子的猫，"
                          "帮我写一段温馨的新婚祝福，别太长")
    assert (slots.occasion, slots.addressee, slots.relationship, slots.tone) == ("结婚", "闺蜜", "朋友", "温馨")
    assert slots.length == LengthSpec("short")
    assert "小雨" in slots.details and "团子" in slots.details


def test_subject_and_kin_words_go_to_details():
    assert "数学" in parse_request("为给数学老师创作带有古文元素的元宵节祝福语").details
    slots = parse_request("给婆婆的生日祝福")
    assert (slots.addressee, slots.details) == ("长辈", "婆婆")
    assert parse_request("兔年祝福语").details == "兔年"


def test_partner_of_unknown_gender_has_no_addressee():
    slots = parse_request("给对象的七夕情话")
    assert (slots.occasion, slots.addressee, slots.relationship, slots.tone) == ("七夕", None, "伴侣", "浪漫")


def test_to_prefix_order_and_empty():
    slots = parse_request("给我的猫写一句温馨的中秋祝福，它爱吃小鱼干")
    assert slots.to_prefix().startswith("场合：中秋｜对象：猫｜语气：温馨｜长度：一句｜细节：")
    assert "小鱼干" in slots.to_prefix()
    assert parse_request("").to_prefix() == ""


def test_form_fields_win_and_conflicts_are_recorded():
    slots = parse_request("新年祝福语 幽默", occasion="生日", tone="搞笑")
    assert slots.occasion == "生日" and slots.tone == "幽默"
    assert slots.conflicts == ("occasion",)
    assert parse_request("元旦祝福", occasion="春节").conflicts == ()  # compatible: no conflict
    assert parse_request("祝福语", addressee="上司", length="12个字").addressee == "领导"


@pytest.mark.parametrize("kind, value, canonical", [
    ("occasion", "中秋节", "中秋"), ("occasion", "除夕", "春节"), ("occasion", "元宵节", "元宵"),
    ("tone", "古文", "古风"), ("tone", "搞笑", "幽默"), ("addressee", "闺女", "女儿"),
    ("addressee", "喵星人", "猫"), ("length", "12个字", "12字"), ("length", "简短", "简短"),
])
def test_normalise_slot_maps_form_values(kind, value, canonical):
    assert normalise_slot(kind, value) == canonical


@pytest.mark.parametrize("kind, value", [
    ("occasion", "火星节"), ("tone", "愤怒"), ("addressee", "外星人"), ("length", "很多"), ("colour", "红"),
])
def test_normalise_slot_rejects_bad_values_bilingually(kind, value):
    with pytest.raises(UnknownSlotValue) as err:
        normalise_slot(kind, value)
    message = str(err.value)
    assert "valid" in message and "可用" in message


@pytest.mark.parametrize("greeting, expected", [
    ("中秋快乐，愿你万事顺意", {"中秋"}),
    ("月圆人团圆，家家都安好", {"中秋"}),
    ("新年快乐！", {"春节", "元旦"}),
    ("月光洒在窗台上，愿你心里亮堂", set()),
    ("红包拿来，灯笼挂好", set()),
    ("祝你结婚纪念日快乐", {"结婚纪念日"}),
    ("端午安康，粽香满屋", {"端午"}),
])
def test_occasions_named(greeting, expected):
    assert occasions_named(greeting) == expected


def test_occasions_compatible_pairs():
    assert occasions_compatible("春节", "元旦") and occasions_compatible("圣诞", "平安夜")
    assert occasions_compatible("高考", "考试") and occasions_compatible("宝宝出生", "满月")
    assert not occasions_compatible("结婚", "订婚")
    assert not occasions_compatible("生日", "春节")
    assert not occasions_compatible("录取", "高考")


@pytest.mark.parametrize("greeting, addressee, expected", [
    ("老妈，母亲节快乐", "妈妈", True), ("喵主子今天多吃一条鱼", "猫", True), ("伙伴们辛苦了", "同事", True),
    ("我要对自己好一点", "自己", True), ("王总，新年大吉", "老板", True), ("爸爸，生日快乐", "妈妈", False),
])
def test_names_addressee(greeting, addressee, expected):
    assert names_addressee(greeting, addressee) is expected


def test_length_fits_and_bounds():
    assert LengthSpec("chars", 12).bounds() == (10, 14)
    assert length_fits("元宵快乐，愿您事事顺心", LengthSpec("chars", 12))
    assert not length_fits("元宵快乐", LengthSpec("chars", 12))
    assert length_fits("万事如意，阖家欢乐", LengthSpec("four_char"))
    assert not length_fits("万事如意，全家都欢乐", LengthSpec("four_char"))
    assert length_fits("随便多长都行", None)
    assert not length_fits("第一句。第二句！", LengthSpec("sentence"))


def test_longest_repeat_run():
    assert longest_repeat_run("香香香香") == 4
    assert longest_repeat_run("哈哈，好") == 2
    assert longest_repeat_run("") == 0


@pytest.mark.parametrize("greeting, expected", [
    ("谢谢你们一年的照顾，新春快乐", {"春节"}),  # thanks inside a festival greeting name no 感谢
    ("过年啦，饺子包好了，新春快乐", {"春节"}),  # 饺子 is no 冬至
    ("祝二老新春大吉", {"春节"}),  # 大吉 is no 开业
    ("端午安康，愿家人无病无忧", {"端午"}),  # 无病 is no 康复
    ("正月十五月儿圆，愿你团团圆圆", {"元宵"}),  # 月儿圆 at 元宵 is no 中秋
    ("圣诞快乐，新年安康", {"圣诞"}),
    ("国庆假期愉快，出行平安", {"国庆"}),
    ("老公，结婚十周年快乐", {"结婚纪念日"}),
    ("恭喜订婚，愿你们早日迎来圆满的婚礼", {"订婚"}),
    ("生日快乐，新的一岁开心多一点", {"生日"}),  # 一岁 of 新的一岁 is no 周岁
    ("婚姻不是一场比赛，新婚快乐", {"结婚"}),
    ("欣闻您六十华诞，恭祝康乐永年", {"生日"}),
    ("祖国华诞，普天同庆", {"国庆"}),
    ("热烈祝贺贵公司成立十周年", {"开业"}),
    ("结婚这些年，谢谢你一直在，情人节快乐", {"情人节"}),
    ("谢谢你一直在", {"感谢"}),  # thanks alone still name 感谢, so a 感谢 request can pass
    ("一路顺风，到了报个平安", {"出行"}),
    ("病房窗外的树绿了，你也会一天天好起来", {"康复"}),
])
def test_occasions_named_ignores_weak_and_shared_cues(greeting, expected):
    assert occasions_named(greeting) == expected


def test_figurative_and_time_cues_name_no_occasion():
    assert "毕业" not in occasions_named("恭喜你从老东家成功“毕业”，新公司记得内推我")
    assert "毕业" not in occasions_named("老师新年好！毕业这么多年，还常想起您的课")
    assert occasions_named("从“我喜欢你”到“我们订婚了”，这一路都算数") == {"订婚"}


@pytest.mark.parametrize("text, occasion, addressee, tone, length, count", [
    ("新春贺词 老板在年会上对全体员工说的", "春节", "员工", None, None, None),
    ("护士节给当护士的老婆", "护士节", "老婆", None, None, None),
    ("我是幼儿园老师，六一要给小朋友写祝福", "儿童节", "孩子", None, None, None),
    ("写3条春节朋友圈文案", "春节", None, None, None, 3),
    ("母亲节给老婆 她是两个孩子的妈", "母亲节", "老婆", None, None, None),
    ("我闺蜜怀孕八个月了，帮我写几句暖心的话", "宝宝出生", "闺蜜", "温馨", None, None),
    ("结婚十周年 给老公", "结婚纪念日", "老公", None, None, None),
    ("女朋友考研二战终于上岸了，写几句祝贺", "录取", "女朋友", None, None, None),
    ("我们班同学毕业十年聚会，我要发言", None, "同学", None, None, None),
    ("他入职才一年就拿了最佳新人奖，夸夸他", "获奖", None, None, None, None),
    ("情人节给女朋友 不要太肉麻 简短", "情人节", "女朋友", None, "简短", None),
    ("给老公写一段话", None, "老公", None, None, None),
    ("中秋给mom和dad", "中秋", "父母", None, None, None),
    ("伴郎致辞，要好笑又感人", None, None, "幽默", "长", None),
    ("婚礼致辞", "结婚", None, "正式", "长", None),
    ("元宵节给客户 两三句就好", "元宵", "客户", None, "简短", None),
])
def test_parse_request_fixed_cases(text, occasion, addressee, tone, length, count):
    slots = parse_request(text)
    assert (slots.occasion, slots.addressee, slots.tone) == (occasion, addressee, tone)
    assert (slots.length.render() if slots.length else None) == length
    assert slots.count == count


def test_people_named_with_a_surname_keep_it_in_details():
    slots = parse_request("新年给邻居王阿姨的祝福")
    assert slots.addressee == "邻居" and "王阿姨" in slots.details
    slots = parse_request("我们部门的李姐下周退休了")
    assert slots.addressee != "姐姐" and "李姐" in slots.details


def test_every_length_the_refusal_lists_is_accepted():
    from generation.requests import LENGTH_KINDS, normalise_slot

    assert [normalise_slot("length", v) for v in ("简短", "一句", "四字", "长", "12字")] == ["简短", "一句", "四字", "长", "12字"]
    assert {normalise_slot("length", kind) for kind in LENGTH_KINDS} == set(LENGTH_KINDS.values())
