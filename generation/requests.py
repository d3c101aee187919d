"""Request slots: parse a free-text Chinese greeting request (祝福语请求) into slots.

The vocabulary is the one of notes/SLOTS_SPEC.md: 53 canonical occasions, 42 canonical
addressees (each in one relationship group), 8 tones and a length spec. Pure Python, no Django.
The lexicon is data (the tables at the top); the matching logic below it is longest-match-first,
so 结婚纪念日 beats 结婚 and 母亲节 is read as an occasion before 母亲 can be read as an addressee.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------
# Canonical values
# ---------------------------------------------------------------------------------------------

OCCASIONS: tuple[str, ...] = (
    "春节", "元旦", "元宵", "情人节", "妇女节", "劳动节", "青年节", "母亲节", "儿童节", "父亲节",
    "端午", "七夕", "教师节", "中秋", "国庆", "重阳", "感恩节", "平安夜", "圣诞", "冬至", "腊八",
    "小年", "护士节", "建军节",
    "生日", "结婚", "结婚纪念日", "订婚", "满月", "百天", "周岁", "宝宝出生", "高考", "中考", "考研",
    "考试", "录取", "毕业", "开学", "入职", "升职", "离职", "退休", "开业", "乔迁", "康复", "出行",
    "比赛", "获奖", "早安", "晚安", "感谢", "送别",
)

RELATIONSHIP_GROUPS: dict[str, tuple[str, ...]] = {
    "家人长辈": ("爷爷", "奶奶", "外公", "外婆", "长辈", "亲戚"),
    "父母": ("妈妈", "爸爸", "父母"),
    "伴侣": ("老公", "老婆", "男朋友", "女朋友"),
    "晚辈": ("儿子", "女儿", "孩子", "宝宝", "学生"),
    "平辈亲人": ("哥哥", "姐姐", "弟弟", "妹妹", "家人"),
    "朋友": ("朋友", "闺蜜", "兄弟", "同学", "网友"),
    "师长": ("老师", "医生", "护士", "师傅"),
    "工作": ("同事", "领导", "老板", "客户", "员工", "合作伙伴"),
    "邻里": ("邻居",),
    "自己": ("自己",),
    "宠物": ("猫", "狗"),
}
ADDRESSEES: tuple[str, ...] = tuple(a for group in RELATIONSHIP_GROUPS.values() for a in group)
RELATIONSHIP_OF: dict[str, str] = {a: g for g, group in RELATIONSHIP_GROUPS.items() for a in group}

TONES: tuple[str, ...] = ("温馨", "幽默", "古风", "正式", "文艺", "浪漫", "励志", "可爱")

LENGTH_KINDS: dict[str, str] = {  # kind -> rendering in the prefix / corpus "length" field
    "short": "简短", "sentence": "一句", "four_char": "四字", "long": "长",
}

# ---------------------------------------------------------------------------------------------
# Lexicon: words a REQUEST uses for each slot value (canonical names match themselves)
# ---------------------------------------------------------------------------------------------

OCCASION_WORDS: dict[str, tuple[str, ...]] = {
    "春节": ("春节", "新春", "过年", "拜年", "除夕", "大年三十", "年三十", "大年初一", "新年", "年夜饭",
             "守岁", "鼠年", "牛年", "虎年", "兔年", "龙年", "蛇年", "马年", "羊年", "猴年", "鸡年",
             "狗年", "猪年", "贺岁", "开年", "正月"),
    "元旦": ("元旦", "跨年", "阳历新年", "新的一年"),
    "元宵": ("元宵", "元宵节", "灯节", "上元", "闹元宵", "正月十五", "元霄"),
    "情人节": ("情人节", "520", "五二零", "valentine"),
    "妇女节": ("妇女节", "三八节", "女神节", "38节", "三八妇女节", "女王节"),
    "劳动节": ("劳动节", "五一", "51劳动节"),
    "青年节": ("青年节", "五四"),
    "母亲节": ("母亲节", "mother's day", "mothers day", "mother’s day"),
    "儿童节": ("儿童节", "六一"),
    "父亲节": ("父亲节", "father's day", "fathers day", "father’s day"),
    "端午": ("端午", "端阳", "粽子节"),
    "七夕": ("七夕", "乞巧", "中国情人节"),
    "教师节": ("教师节",),
    "中秋": ("中秋", "八月十五", "月饼节"),
    "国庆": ("国庆", "十一长假", "十一假期", "祖国生日", "建国"),
    "重阳": ("重阳", "敬老节", "老人节", "九九重阳"),
    "感恩节": ("感恩节", "thanksgiving"),
    "平安夜": ("平安夜",),
    "圣诞": ("圣诞", "圣诞节", "christmas", "Christmas", "xmas", "圣旦"),
    "冬至": ("冬至",),
    "腊八": ("腊八",),
    "小年": ("小年",),
    "护士节": ("护士节",),
    "建军节": ("建军节", "八一"),
    "生日": ("生日", "寿辰", "大寿", "祝寿", "寿宴", "寿诞", "过寿", "华诞", "诞辰", "生辰", "寿星", "生曰", "birthday"),
    "结婚": ("结婚", "新婚", "婚礼", "大婚", "喜结连理", "成婚", "出嫁", "嫁人", "娶媳妇", "婚宴",
             "新郎", "新娘", "婚庆", "喜酒", "领证"),
    "结婚纪念日": ("结婚纪念日", "结婚周年", "婚姻纪念日", "银婚", "金婚", "钻石婚", "结婚一周年"),
    "订婚": ("订婚", "定婚", "求婚成功", "订亲"),
    "满月": ("满月酒", "满月"),
    "百天": ("百天", "百日宴", "百岁宴", "百日"),
    "周岁": ("周岁", "抓周", "一岁生日"),
    "宝宝出生": ("宝宝出生", "喜得贵子", "喜得千金", "生孩子", "生宝宝", "添丁", "出生", "新生儿",
                 "弄璋", "弄瓦", "当妈妈", "当爸爸", "生了个", "生了一个", "生了一对", "二胎", "三胎",
                 "顺产", "剖腹产", "怀孕", "预产期", "双胞胎", "龙凤胎"),
    "高考": ("高考",),
    "中考": ("中考",),
    "考研": ("考研", "研究生考试"),
    "考试": ("考试", "考公", "考证", "期末考", "期末", "月考", "考驾照", "科目二", "科目三", "四六级",
             "四级", "六级", "雅思", "托福", "面试", "笔试", "体考", "会考", "统考", "考编"),
    "录取": ("录取", "上岸", "金榜题名", "考上", "被录", "offer", "Offer", "升学", "题名"),
    "毕业": ("毕业", "同学录", "毕业季", "答辩", "毕业生"),
    "开学": ("开学", "新学期", "上大学", "上小学", "上初中", "上高中", "上幼儿园"),
    "入职": ("入职", "新工作", "新岗位", "加入公司", "加盟", "报到"),
    "升职": ("升职", "升迁", "晋升", "高升", "提拔", "升官", "加薪", "荣升"),
    "离职": ("离职", "辞职", "跳槽", "离开公司", "裸辞"),
    "退休": ("退休", "荣休", "光荣退休"),
    "开业": ("开业", "开张", "新店", "开店", "开业大吉", "开门红", "周年庆"),
    "乔迁": ("乔迁", "搬家", "新居", "新家", "搬新家", "入宅", "入伙", "新房"),
    "康复": ("康复", "生病", "住院", "早日康复", "病愈", "出院", "手术", "养病", "身体不舒服", "感冒",
             "痊愈"),
    "出行": ("出行", "旅行", "旅游", "一路平安", "一路顺风", "出远门", "坐飞机", "远行", "出差", "出国",
             "留学", "自驾"),
    "比赛": ("比赛", "竞赛", "赛场", "参赛", "运动会", "决赛", "演出", "上台"),
    "获奖": ("获奖", "得奖", "拿奖", "夺冠", "冠军", "获得奖", "荣获", "获得", "获评", "评为", "评上", "等奖",
             "金奖", "银奖", "铜奖", "奖状", "奖杯", "最佳"),
    "早安": ("早安", "早上好", "早晨", "早上", "上午好", "清晨"),
    "晚安": ("晚安", "睡前", "晚上好", "好梦", "睡个好觉"),
    "感谢": ("感谢", "谢谢", "感恩", "致谢", "答谢", "谢意"),
    "送别": ("送别", "送行", "饯行", "欢送", "告别", "分别", "离别", "道别", "践行", "走之前", "临走", "临行", "舍不得"),
}
# Occasions read from a request only when no other occasion is named (教师节感谢老师 -> 教师节).
WEAK_OCCASIONS: frozenset[str] = frozenset({"感谢", "早安", "晚安", "出行", "考试", "送别"})
# Words that only hint at an occasion: read when no stronger word names one (转学写同学录 -> 送别).
WEAK_WORDS: frozenset[str] = frozenset({"同学录", "上大学", "上小学", "上初中", "上高中", "上幼儿园", "获得", "最佳"})
# Words that name both the occasion and the addressee (给毕业生的寄语 -> 毕业, 学生).
OCCASION_WORD_ADDRESSEE: dict[str, str] = {"毕业生": "学生"}

ADDRESSEE_WORDS: dict[str, tuple[str, ...]] = {
    "爷爷": ("爷爷", "祖父", "爷"),
    "奶奶": ("奶奶", "祖母"),
    "外公": ("外公", "姥爷", "外祖父"),
    "外婆": ("外婆", "姥姥", "外祖母"),
    "长辈": ("长辈", "老人", "老人家", "婆婆", "公公", "岳父", "岳母", "丈母娘", "老丈人", "公婆",
             "爷爷奶奶", "外公外婆", "老寿星", "叔叔", "阿姨", "伯伯", "舅舅", "姑姑", "姨妈", "干妈",
             "干爹", "老同志"),
    "亲戚": ("亲戚", "亲友", "亲朋", "亲朋好友", "表哥", "表姐", "堂哥", "堂姐", "侄子", "侄女",
             "外甥", "外甥女", "表弟", "表妹", "堂弟", "堂妹", "堂兄", "表兄"),
    "妈妈": ("妈妈", "母亲", "老妈", "妈咪", "娘亲", "老娘", "妈", "mom", "mommy", "mum"),
    "爸爸": ("爸爸", "父亲", "老爸", "爹", "老爹", "爸", "dad", "daddy"),
    "父母": ("父母", "爸妈", "爹妈", "双亲", "二老", "爸爸妈妈"),
    "老公": ("老公", "丈夫", "先生", "夫君", "孩子他爸"),
    "老婆": ("老婆", "媳妇", "妻子", "太太", "夫人", "爱妻", "孩子他妈"),
    "男朋友": ("男朋友", "男友", "男票", "男神", "bf"),
    "女朋友": ("女朋友", "女友", "女票", "女神", "gf"),
    "儿子": ("儿子", "犬子", "令郎", "小子"),
    "女儿": ("女儿", "闺女", "千金", "令爱"),
    "孩子": ("孩子", "小朋友", "娃", "小孩", "晚辈", "孩子们", "小宝贝", "考生"),
    "宝宝": ("宝宝", "宝贝", "小宝宝", "婴儿", "新生儿"),
    "学生": ("学生", "同学们", "弟子", "学子", "学员", "毕业生", "徒弟"),
    "哥哥": ("哥哥", "老哥", "大哥", "哥"),
    "姐姐": ("姐姐", "老姐", "大姐", "姐"),
    "弟弟": ("弟弟", "老弟", "小弟"),
    "妹妹": ("妹妹", "老妹", "小妹", "妹子"),
    "家人": ("家人", "家里人", "一家人", "全家", "家里"),
    "朋友": ("朋友", "好友", "友人", "老友", "发小", "哥们", "死党", "好朋友", "朋友们", "老朋友",
             "挚友", "基友"),
    "闺蜜": ("闺蜜", "姐妹", "好姐妹", "闺密", "姐妹们"),
    "兄弟": ("兄弟", "好兄弟", "兄弟们", "铁哥们"),
    "同学": ("同学", "老同学", "室友", "舍友", "校友", "同桌", "师兄", "师姐", "师弟", "师妹"),
    "网友": ("网友", "粉丝", "群友", "网上的朋友"),
    "老师": ("老师", "恩师", "班主任", "导师", "教授", "师父", "园长", "校长"),
    "医生": ("医生", "大夫", "医师", "白衣天使"),
    "护士": ("护士", "护士长"),
    "师傅": ("师傅",),
    "同事": ("同事", "同仁", "工友", "搭档", "同事们", "团队伙伴"),
    "领导": ("领导", "上司", "上级", "主管", "经理", "总监", "部长", "主任", "局长", "处长", "行长",
             "leader"),
    "老板": ("老板", "老总", "董事长", "boss", "老板娘", "总裁", "东家"),
    "客户": ("客户", "顾客", "客人", "甲方", "会员", "老客户", "用户", "商家"),
    "员工": ("员工", "全体员工", "团队", "下属", "职工", "员工们", "伙计"),
    "合作伙伴": ("合作伙伴", "合伙人", "合作方", "伙伴", "供应商", "经销商"),
    "邻居": ("邻居", "街坊", "邻里", "乡亲"),
    "自己": ("自己", "本人", "我自己"),
    "猫": ("猫", "猫咪", "喵星人", "主子", "猫主子", "小猫", "喵喵", "橘猫", "布偶猫", "英短", "蓝猫", "狸花猫"),
    "狗": ("狗", "狗狗", "汪星人", "小狗", "狗子", "毛孩子", "金毛", "柯基", "泰迪", "柴犬", "哈士奇", "二哈", "边牧",
          "拉布拉多", "比熊"),
}
# Words that name a partner of unknown gender: addressee None, relationship 伴侣.
PARTNER_WORDS: tuple[str, ...] = ("对象", "爱人", "另一半", "恋人", "情侣", "心上人", "亲爱的", "伴侣")
# Addressee words kept in details too, since the canonical value loses them (婆婆 -> 长辈).
KEEP_IN_DETAILS: frozenset[str] = frozenset({
    "婆婆", "公公", "岳父", "岳母", "丈母娘", "老丈人", "公婆", "叔叔", "阿姨", "伯伯", "舅舅", "姑姑",
    "姨妈", "干妈", "干爹", "表哥", "表姐", "堂哥", "堂姐", "侄子", "侄女", "外甥", "外甥女", "班主任",
    "导师", "教授", "校长", "园长", "经理", "总监", "主任", "董事长", "甲方", "室友", "舍友", "发小",
    "考生", "毕业生", "表弟", "表妹", "堂弟", "堂妹", "堂兄", "表兄", "师兄", "师姐", "师弟", "师妹", "徒弟", "粉丝",
    "橘猫", "布偶猫", "英短", "蓝猫", "狸花猫", "金毛", "柯基", "泰迪", "柴犬", "哈士奇", "二哈", "边牧", "拉布拉多", "比熊",
})
# Words that contain an addressee word but name nobody to greet (朋友圈 is a place to post).
NOT_ADDRESSEE_WORDS: tuple[str, ...] = ("朋友圈", "单身狗", "圣诞老人")
# Occasions that imply an addressee when the request names none.
DEFAULT_ADDRESSEE: dict[str, str] = {"母亲节": "妈妈", "父亲节": "爸爸", "教师节": "老师", "护士节": "护士"}

TONE_WORDS: dict[str, tuple[str, ...]] = {
    "温馨": ("温馨", "走心", "暖心", "温暖", "暖暖", "感人", "真挚", "真诚", "贴心", "暖一点", "亲切"),
    "幽默": ("幽默", "搞笑", "俏皮", "有趣", "逗", "好玩", "沙雕", "诙谐", "调皮", "风趣", "逗比", "段子",
             "接地气", "皮一点", "好笑", "搞怪"),
    "古风": ("古风", "古文", "文言", "诗意古典", "古典", "古诗", "诗词", "文言文", "对联", "藏头诗",
             "古韵", "国风", "七言", "五言", "绝句", "骈文"),
    "正式": ("正式", "商务", "庄重", "官方", "得体", "稳重", "大气", "客气", "礼貌", "严肃", "体面",
             "致辞", "公文"),
    "文艺": ("文艺", "唯美", "诗意", "有文采", "优美", "文雅", "清新", "有意境", "高级感", "文青",
             "散文", "有深度", "高情商"),
    "浪漫": ("浪漫", "甜蜜", "甜甜", "甜一点", "情话", "甜", "撒糖", "土味情话", "肉麻"),
    "励志": ("励志", "正能量", "鼓励", "加油", "打气", "激励", "鼓舞", "奋斗", "热血", "燃一点"),
    "可爱": ("可爱", "萌", "软萌", "卖萌", "童趣", "呆萌", "奶凶", "萌萌哒", "童真"),
}

LENGTH_WORDS: dict[str, tuple[str, ...]] = {  # kind -> words; chars (N字) is read by a pattern
    "four_char": ("四字", "四个字", "四字词语", "四字成语", "成语", "4字", "4个字"),
    "short": ("简短", "短一点", "短点", "短句", "简洁", "别太长", "不要太长", "不用太长", "短小",
              "精简", "简单几句", "简单点", "简单一点", "短短", "短的", "短些", "一两句", "两三句", "三两句"),
    "sentence": ("一句话", "一句", "1句"),
    "long": ("长一点", "详细", "长篇", "长文", "小作文", "多写点", "长些", "长的", "长长的",
             "丰富一点", "具体一点", "致辞", "一篇", "段落"),
}
LENGTH_PRIORITY: tuple[str, ...] = ("chars", "four_char", "short", "sentence", "long")

# Words a GREETING uses that name an occasion (stricter than the request words: 月 alone,
# 灯笼, 红包 and 团圆 alone name no single occasion). A word may name several occasions.
GREETING_OCCASION_WORDS: dict[str, tuple[str, ...]] = {
    "春节": ("春节", "新春", "过年", "拜年", "除夕", "年夜饭", "守岁", "春联", "压岁钱", "年年有余",
             "辞旧迎新", "鼠年", "牛年", "虎年", "兔年", "龙年", "蛇年", "马年", "羊年", "猴年", "鸡年",
             "猪年", "贺岁", "春晚", "大年", "恭喜发财", "新年", "新岁"),
    "元旦": ("元旦", "跨年", "新年", "新的一年"),
    "元宵": ("元宵", "汤圆", "灯谜", "闹花灯", "花灯", "上元", "正月十五", "元夕"),
    "情人节": ("情人节",),
    "妇女节": ("妇女节", "女神节", "三八节"),
    "劳动节": ("劳动节", "五一"),
    "青年节": ("青年节", "五四"),
    "母亲节": ("母亲节",),
    "儿童节": ("儿童节", "六一"),
    "父亲节": ("父亲节",),
    "端午": ("端午", "粽子", "粽香", "龙舟", "艾草", "包粽", "端阳", "屈原"),
    "七夕": ("七夕", "鹊桥", "牛郎", "织女", "银河相会"),
    "教师节": ("教师节",),
    "中秋": ("中秋", "月饼", "月圆", "嫦娥", "八月十五", "明月千里", "赏月", "圆月", "月儿圆", "团圆月"),
    "国庆": ("国庆", "祖国", "华诞", "国泰民安", "普天同庆"),
    "重阳": ("重阳", "茱萸", "登高望远", "菊花酒", "九九"),
    "感恩节": ("感恩节", "感恩"),
    "平安夜": ("平安夜", "平安果", "苹果"),
    "圣诞": ("圣诞", "驯鹿", "雪橇", "麋鹿", "Merry Christmas", "铃儿响叮当"),
    "冬至": ("冬至", "数九"),
    "腊八": ("腊八",),
    "小年": ("小年", "灶王", "祭灶"),
    "护士节": ("护士节", "白衣天使"),
    "建军节": ("建军节", "八一", "军旅", "戎装"),
    "生日": ("生日", "寿辰", "大寿", "寿星", "生辰", "寿比南山", "福如东海", "长一岁", "大一岁",
             "蛋糕", "蜡烛", "许愿", "岁岁有今朝", "诞辰", "祝寿", "寿诞", "花甲", "古稀", "杖朝", "耄耋",
             "期颐", "芳辰"),
    "结婚": ("新婚", "结婚", "婚礼", "新郎", "新娘", "喜结连理", "百年好合", "永结同心", "新婚燕尔",
             "佳偶天成", "天作之合", "良缘", "喜酒", "大婚"),
    "结婚纪念日": ("结婚纪念日", "纪念日", "周年", "银婚", "金婚", "纪念日快乐"),
    "订婚": ("订婚", "定亲", "订亲", "婚约", "良缘初定"),
    "满月": ("满月",),
    "百天": ("百天", "百日"),
    "周岁": ("周岁", "抓周", "一周岁", "满周岁"),
    "宝宝出生": ("出生", "降生", "诞生", "新生命", "小生命", "来到这个世界", "喜得贵子", "喜得千金",
                 "弄璋", "弄瓦", "添丁", "新生儿", "宝宝", "初为父母", "当妈妈", "当爸爸", "麟儿", "明珠入掌"),
    "高考": ("高考",),
    "中考": ("中考",),
    "考研": ("考研", "研究生"),
    "考试": ("考试", "考场", "金榜", "逢考必过", "答题", "下笔如有神", "考出", "考得", "考个好成绩"),
    "录取": ("录取", "上岸", "通知书", "金榜题名", "考上", "被录"),
    "毕业": ("毕业", "学士服", "学位", "青春散场", "毕业季", "母校", "骊歌", "各奔东西"),
    "开学": ("开学", "新学期"),
    "入职": ("入职", "新岗位", "新工作", "加入我们", "新同事", "新征程"),
    "升职": ("升职", "高升", "晋升", "升迁", "步步高升", "荣升", "履新"),
    "离职": ("离职", "辞职", "新的开始", "江湖再见", "另谋高就"),
    "退休": ("退休", "荣休", "退而不休", "含饴弄孙"),
    "开业": ("开业", "开张", "生意兴隆", "财源广进", "红红火火开张", "开业大吉", "开张大吉", "开门红", "新店",
             "周年庆", "司庆", "店庆"),
    "乔迁": ("乔迁", "新居", "新家", "搬家", "安居", "新房", "入宅", "燕子归巢"),
    "康复": ("康复", "早日康复", "痊愈", "出院", "养好身体", "身体快快好起来", "病愈", "病好", "养病", "生病",
             "病情", "病床", "病魔", "手术", "病号", "病痛", "病房", "沉疴", "好起来"),
    "出行": ("一路平安", "一路顺风", "旅途", "旅行", "出行", "远行", "行程", "飞机", "启程", "出远门", "登机",
             "飞往", "异国", "他乡"),
    "比赛": ("比赛", "赛场", "赛出", "决赛", "竞赛", "对手"),
    "获奖": ("获奖", "得奖", "夺冠", "冠军", "荣誉", "奖杯", "领奖"),
    "早安": ("早安", "早上好", "早晨好"),
    "晚安": ("晚安", "好梦", "美梦", "睡个好觉", "入梦"),
    "感谢": ("感谢", "谢谢", "感恩", "致谢"),
    "送别": ("送别", "送行", "饯行", "后会有期", "离别", "告别", "山高水长", "舍不得你走", "前程似锦"),
}

# Occasions a greeting for another occasion mentions in passing (谢谢 in a New Year greeting, 出行平安
# in a 国庆 one, 告别待业 in an 入职 one): named only when the greeting names nothing stronger.
GREETING_WEAK_OCCASIONS: frozenset[str] = frozenset({"感谢", "出行", "送别", "早安", "晚安"})
# Cues shared with other occasions (月圆 at 元宵, 新年 in a 圣诞 card, 华诞 of a 60th birthday, 新岗位
# of a promotion): they name their occasion only when no stronger cue names one.
GREETING_WEAK_CUES: frozenset[str] = frozenset({
    "月圆", "月儿圆", "圆月", "团圆月", "华诞", "新年", "新岁", "新的一年", "汤圆", "新岗位", "新征程", "新的开始",
    "江湖再见", "纪念日", "周年", "来到这个世界", "宝宝", "上岸", "考上", "手术", "履新", "他乡", "异国", "芳辰",
    "感恩", "好起来",
})
# Cues that count only when the greeting also has one of these context words (周年 of a company is
# no wedding anniversary).
GREETING_CUE_CONTEXT: dict[str, tuple[str, ...]] = {
    "纪念日": ("婚", "夫妻", "老公", "老婆", "爱人", "白头", "相守"),
    "周年": ("婚", "夫妻", "老公", "老婆", "爱人", "白头", "相守"),
}
# Cues that do not count when the greeting has one of these words (冬至 in the south eats 汤圆 too).
GREETING_CUE_EXCLUDED_BY: dict[str, tuple[str, ...]] = {"汤圆": ("冬",)}
# A company's 周年 is its anniversary, which requests call 周年庆 (the 开业 occasion).
_COMPANY_WORDS: tuple[str, ...] = ("公司", "贵司", "我司", "企业", "团队", "品牌", "门店")
# Words that make a greeting a festival greeting: its thanks (谢谢您) then name no 感谢 occasion.
_FESTIVAL_WORDS: tuple[str, ...] = ("节日快乐", "节快乐", "佳节", "节日愉快")
# Phrases that wish something every greeting may wish and name no occasion (祝新的一岁升职加薪).
GREETING_NEUTRAL_PHRASES: tuple[str, ...] = ("升职加薪", "新的一岁", "金榜题名", "金榜高中", "病病", "无病")
# Spans that name one occasion whatever words they contain (结婚十周年 is the anniversary).
_N = r"(\d+|[一二两三四五六七八九十百]+)"
GREETING_OCCASION_PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"结婚\s*" + _N + r"\s*周年"), "结婚纪念日"),
    (re.compile(r"(公司|贵司|我司|企业|品牌|本店)(成立)?\s*" + _N + r"\s*(周年|周岁)"), "开业"),
    (re.compile(r"(?<!祖国)(?<!中国)(" + _N[1:-1] + r"|[六七八九]秩)\s*(华诞|寿辰|寿诞)"), "生日"),
)
# When both are named, the first is what the greeting is for (订婚 greetings look ahead to the 婚礼).
GREETING_DOMINATES: dict[str, frozenset[str]] = {
    "订婚": frozenset({"结婚"}), "结婚纪念日": frozenset({"结婚"}), "开业": frozenset({"生日", "结婚纪念日"}),
}
# A cue that opens a quote (成功“毕业”, “退休预备役”), comes before one (晋升为“自由人”) or follows 不是
# (婚姻不是一场比赛) is a figure of speech, not the occasion; “我们订婚了” is quoted speech and counts.
_OPENING_QUOTES = "“\"「『"
_FIGURE_AFTER_RE = re.compile(r"[为成]?[“\"「『]")
_NEGATED_BEFORE_RE = re.compile(r"(不是|并非|不再是)" + r"[^，,。！!？?]{0,3}$")
# A cue followed by a span of time or 后 tells when, not what is greeted (结婚这些年, 毕业后才懂).
_GREETING_DURATION_RE = re.compile(
    r"(才|已经|已|都|快|刚)?(这么多|这些|好多|很多|多|\d+|[一二两三四五六七八九十百半几]+)\s*个?多?(年|月|天|载)|后|以后|之后")

# Words a GREETING uses to name each addressee (称呼). The canonical name always counts.
ADDRESSEE_NAMES: dict[str, tuple[str, ...]] = {
    "爷爷": ("爷爷", "爷", "祖父"), "奶奶": ("奶奶", "祖母"), "外公": ("外公", "姥爷", "外祖父"),
    "外婆": ("外婆", "姥姥", "外祖母"),
    "长辈": ("长辈", "您", "老人家", "婆婆", "公公", "岳父", "岳母", "叔叔", "阿姨", "伯伯", "爷爷", "奶奶",
             "外公", "外婆", "舅舅", "姑姑", "姨"),
    "亲戚": ("亲戚", "亲朋", "亲友", "家人", "大家", "一家", "表哥", "表姐", "叔叔", "阿姨"),
    "妈妈": ("妈", "母亲", "娘", "妈咪"), "爸爸": ("爸", "父亲", "爹"),
    "父母": ("爸", "妈", "父母", "爹娘", "二老", "双亲"),
    "老公": ("老公", "丈夫", "先生", "亲爱的", "夫君"), "老婆": ("老婆", "媳妇", "妻", "亲爱的", "太太"),
    "男朋友": ("男朋友", "男友", "亲爱的", "宝贝", "你"), "女朋友": ("女朋友", "女友", "亲爱的", "宝贝", "你"),
    "儿子": ("儿子", "儿", "孩子", "小子", "宝贝"), "女儿": ("女儿", "闺女", "孩子", "宝贝", "姑娘"),
    "孩子": ("孩子", "宝贝", "小朋友", "娃"), "宝宝": ("宝宝", "宝贝", "小家伙", "小可爱", "小天使"),
    "学生": ("同学", "孩子", "学生", "少年", "你们"),
    "哥哥": ("哥",), "姐姐": ("姐",), "弟弟": ("弟",), "妹妹": ("妹",),
    "家人": ("家人", "家", "大家", "全家"),
    "朋友": ("朋友", "友", "你", "兄弟", "姐妹"), "闺蜜": ("闺蜜", "姐妹", "宝", "亲爱的", "你"),
    "兄弟": ("兄弟", "哥们", "兄", "老铁", "你"), "同学": ("同学", "老同学", "同窗", "你"),
    "网友": ("网友", "朋友", "大家", "各位"),
    "老师": ("老师", "恩师", "师", "先生"), "医生": ("医生", "大夫", "医"), "护士": ("护士", "白衣天使"),
    "师傅": ("师傅", "师父"),
    "同事": ("同事", "伙伴", "大家", "战友", "搭档", "并肩"), "领导": ("领导", "总", "经理", "您", "主任"),
    "老板": ("老板", "总", "领导", "您"), "客户": ("客户", "您", "贵", "合作", "朋友"),
    "员工": ("员工", "大家", "伙伴", "同事", "同仁", "团队", "各位"),
    "合作伙伴": ("合作", "伙伴", "贵司", "携手", "您"), "邻居": ("邻居", "邻", "街坊"),
    "自己": ("我", "自己"), "猫": ("猫", "喵", "主子", "毛孩子"), "狗": ("狗", "汪", "毛孩子"),
}

# Pairs of occasions a greeting for one may name (除夕 sits inside 春节 in the lexicon).
COMPATIBLE_PAIRS: frozenset[frozenset[str]] = frozenset(frozenset(p) for p in (
    ("春节", "元旦"), ("平安夜", "圣诞"), ("高考", "考试"), ("中考", "考试"), ("考研", "考试"),
    ("满月", "宝宝出生"), ("百天", "宝宝出生"), ("周岁", "宝宝出生"),
))

# Filler words of requests, dropped from the details (longest first when removed).
FILLER_WORDS: tuple[str, ...] = (
    "祝福语", "祝福词", "祝福的话", "祝贺词", "祝辞", "贺词", "祝福", "祝贺", "祝愿", "恭祝", "恭贺", "庆祝",
    "文案", "句子", "短语", "语句", "的话", "话语", "寄语", "留言", "一段话", "朋友圈", "说说", "贺卡",
    "大全", "经典", "最新版", "最新", "最火", "推荐", "精选", "模板", "范文", "内容",
    "帮我写", "帮我", "给我写", "请写", "请帮我", "请", "写给", "写一", "写", "创作", "生成", "来", "想要",
    "我想", "麻烦", "能不能", "可以", "一下", "一些", "几句", "送给", "送", "给", "为", "对", "跟", "向",
    "祝", "快乐", "节日", "节", "的", "了", "吧", "呢", "啊", "呀", "要", "带有", "带", "元素", "风格",
    "风", "语气", "一点", "点", "一个", "个", "条", "句", "些", "用", "发", "说", "什么", "怎么", "好",
    "我的", "我们", "我", "和", "一起", "一样", "顺利", "成功", "幸福", "安康", "健康", "吉祥",
    "下个月", "下周", "明天", "今天", "马上", "快要", "就要", "她们", "他们", "她", "他", "它", "是", "一只",
    "叫", "过", "在", "也", "都", "就", "还", "又", "被", "让", "把", "着", "那", "这", "她的", "他的",
    "类型", "口吻", "适合", "版", "字", "很", "有点", "比较", "稍微", "超", "多", "哦", "嗯",
)

# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------


class UnknownSlotValue(ValueError):
    """A form value that maps to no canonical slot value; the message lists the valid ones."""


@dataclass(frozen=True)
class LengthSpec:
    kind: str            # "chars", "short", "sentence", "four_char", "long"
    target: int | None = None

    def bounds(self) -> tuple[int, int]:
        """Allowed character count (Chinese characters and punctuation, no whitespace)."""
        if self.kind == "chars":
            n = self.target or 0
            slack = max(2, round(n * 0.15))  # 12字 may be 10..14: punctuation is counted too
            return max(1, n - slack), n + slack
        return {"short": (4, 40), "sentence": (4, 40), "four_char": (4, 40), "long": (60, 600)}[self.kind]

    def render(self) -> str:
        return f"{self.target}字" if self.kind == "chars" else LENGTH_KINDS[self.kind]


@dataclass(frozen=True)
class RequestSlots:
    occasion: str | None = None
    addressee: str | None = None
    relationship: str | None = None
    tone: str | None = None
    length: LengthSpec | None = None
    count: int | None = None
    age: int | None = None
    details: str = ""
    conflicts: tuple[str, ...] = field(default=())  # slots where an explicit form field overrode the text

    def to_prefix(self) -> str:
        """The model's conditioning text: 场合：中秋｜对象：猫｜语气：温馨｜长度：一句｜岁数：70｜细节：…"""
        parts = [
            ("场合", self.occasion), ("对象", self.addressee), ("语气", self.tone),
            ("长度", self.length.render() if self.length else None),
            ("岁数", str(self.age) if self.age is not None else None), ("细节", self.details or None),
        ]
        return "｜".join(f"{name}：{value}" for name, value in parts if value)


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------

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


def parse_request(text: str, *, occasion: str | None = None, addressee: str | None = None,
                  tone: str | None = None, length: str | LengthSpec | None = None) -> RequestSlots:
    """Slots of a free-text request. Explicit form fields (keyword arguments) win over the text;
    the slots where they disagree with what the text says are listed in `conflicts`."""
    text = (text or "").strip()
    mask = [False] * len(text)
    kept: list[str] = []

    length_spec = _parse_length(text, mask)  # before counts: 12个字 is a length, not a count
    age = _parse_age(text, mask)
    count = _parse_count(text, mask)
    occasion_matches = _find(text, _OCCASION_INDEX, mask) + _opened_shops(text, mask)
    text_occasion = _pick_occasion(text, occasion_matches)
    for start, end, word, canonical in occasion_matches:
        if WORD_KEEPS_DETAIL(word, canonical) or _another_occasion(canonical, text_occasion):
            kept.append(word)  # 重阳节给退休的老同事: 退休 is a detail of the 重阳 request

    addressee_mask = list(mask)
    _claim_words(text, addressee_mask, NOT_ADDRESSEE_WORDS)  # 朋友圈 stays a detail, but names no 朋友
    addressee_matches = _find(text, _ADDRESSEE_INDEX, addressee_mask)
    for start, end, _w, _c in addressee_matches:
        _claim(mask, start, end)
    kept += _surnamed_people(text, addressee_matches, mask)  # 王阿姨, 张教授, 李姐
    text_addressee, relationship = None, None
    chosen = _pick_addressee(text, addressee_matches)
    if chosen:
        _s, _e, word, canonical = chosen
        text_addressee = canonical or None
        relationship = RELATIONSHIP_OF[canonical] if canonical else "伴侣"
        # 婆婆 -> 长辈 loses the word; other people named (她老公, 一只猫) are details too.
        others = [m for m in addressee_matches if not chosen[0] <= m[0] < chosen[1]]  # 妈妈和爸爸 is one 父母
        kept += [w for _s, _e, w, c in others if w in KEEP_IN_DETAILS or (w, c) != (word, canonical)]
        kept += [word] if word in KEEP_IN_DETAILS else []
    if text_addressee is None and relationship is None:
        implied = [OCCASION_WORD_ADDRESSEE[w] for _s, _e, w, _c in occasion_matches if w in OCCASION_WORD_ADDRESSEE]
        text_addressee = implied[0] if implied else DEFAULT_ADDRESSEE.get(text_occasion)
        relationship = RELATIONSHIP_OF.get(text_addressee)

    text_tone = _parse_tone(text, mask)

    details = "，".join(filter(None, [_details(text, mask)] + kept))
    if age == 1 and text_occasion in ("生日", "周岁", None) and re.search(r"(一|1)\s*(周)?岁", text):
        text_occasion, age = "周岁", None  # 一岁生日 is the 周岁 occasion

    conflicts = []
    if occasion:
        occasion = normalise_slot("occasion", occasion)
        if text_occasion and text_occasion != occasion and not occasions_compatible(text_occasion, occasion):
            conflicts.append("occasion")
        text_occasion = occasion
    if addressee:
        addressee = normalise_slot("addressee", addressee)
        if text_addressee and text_addressee != addressee:
            conflicts.append("addressee")
        text_addressee, relationship = addressee, RELATIONSHIP_OF[addressee]
    if tone:
        tone = normalise_slot("tone", tone)
        if text_tone and text_tone != tone:
            conflicts.append("tone")
        text_tone = tone
    if length:
        spec = length if isinstance(length, LengthSpec) else _length_from_form(length)
        if length_spec and length_spec != spec:
            conflicts.append("length")
        length_spec = spec
    return RequestSlots(text_occasion, text_addressee, relationship, text_tone, length_spec, count, age,
                        details, tuple(conflicts))


def WORD_KEEPS_DETAIL(word: str, canonical: str) -> bool:
    """Year animals (蛇年) and exam kinds (考公, 四六级) say more than the canonical occasion."""
    return (canonical == "春节" and word.endswith("年") and len(word) == 2 and word not in ("新年", "过年", "开年")) or \
        (canonical in ("考试", "出行", "录取") and word != canonical and len(word) >= 2 and word not in (
            "期末考", "一路平安", "一路顺风", "考上", "被录", "上岸", "题名", "金榜题名")) or \
        (canonical == "宝宝出生" and word in _BIRTH_DETAIL_WORDS)


# Birth words that say more than 宝宝出生 (not born yet, twins, a second child).
_BIRTH_DETAIL_WORDS = frozenset({"怀孕", "预产期", "双胞胎", "龙凤胎", "二胎", "三胎", "剖腹产", "顺产"})


# ---------------------------------------------------------------------------------------------
# Form values
# ---------------------------------------------------------------------------------------------

_CANONICAL = {"occasion": OCCASIONS, "addressee": ADDRESSEES, "tone": TONES}
_SLOT_NAMES_ZH = {"occasion": "场合", "addressee": "对象", "tone": "语气", "length": "长度"}


def normalise_slot(kind: str, value: str) -> str:
    """A user-typed form value -> its canonical string ("中秋节" -> "中秋", "古文" -> "古风",
    "12个字" -> "12字"); raises UnknownSlotValue naming the field and listing the valid values."""
    if kind not in _SLOT_NAMES_ZH:
        raise UnknownSlotValue(f"未知的字段 {kind!r} / unknown slot kind {kind!r}; "
                               f"可用 / valid: {', '.join(_SLOT_NAMES_ZH)}")
    value = (value or "").strip()
    if kind == "length":
        return _length_from_form(value).render()
    if value in _CANONICAL[kind]:
        return value
    index = {"occasion": _OCCASION_INDEX, "addressee": _ADDRESSEE_INDEX, "tone": _TONE_INDEX}[kind]
    exact = {c for w, c in index if w.lower() == value.lower() and c}
    if not exact and value:
        stripped = re.sub(r"(节日|节|快乐|的|风格|风|一点|语气)$", "", value)
        exact = {c for w, c in index if w.lower() == stripped.lower() and c}
        if not exact:
            found = {m[3] for m in _find(value, index, [False] * len(value)) if m[3]}
            exact = found if len(found) == 1 else set()
    if len(exact) == 1:
        return exact.pop()
    valid = "、".join(_CANONICAL[kind])
    raise UnknownSlotValue(f"{_SLOT_NAMES_ZH[kind]}（{kind}）的值 {value!r} 无法识别，可用的值：{valid} / "
                           f"unknown {kind} value {value!r}; valid values: {valid}")


def _length_from_form(value: str) -> LengthSpec:
    if value == "chars":
        raise UnknownSlotValue(f"长度（length）的值 {value!r} 缺字数 / length {value!r} needs a form like 12字")
    named = {rendered: kind for kind, rendered in LENGTH_KINDS.items()} | {kind: kind for kind in LENGTH_KINDS}
    if value in named:  # the values the refusal below lists, and the kinds' own names
        return LengthSpec(named[value])
    spec = _parse_length(value, [False] * len(value)) if value else None
    if spec is None and value.isdigit():
        spec = LengthSpec("four_char") if int(value) == 4 else LengthSpec("chars", int(value))
    if spec is None:
        raise UnknownSlotValue(f"长度（length）的值 {value!r} 无法识别，可用：N字（如 12字）、简短、一句、四字、长 / "
                               f"unknown length value {value!r}; valid: N字 (e.g. 12字), 简短, 一句, 四字, 长")
    return spec


# ---------------------------------------------------------------------------------------------
# Checks on greetings
# ---------------------------------------------------------------------------------------------


def occasions_named(greeting: str) -> set[str]:
    """Canonical occasions a greeting text names (新年 names both 春节 and 元旦).

    Cues come in tiers: a plain cue of a festival or event, then a cue shared with other occasions
    (GREETING_WEAK_CUES), then the everyday occasions (GREETING_WEAK_OCCASIONS), then 感谢 (thanks
    are in every kind of greeting). Only the first tier with a cue names occasions, so a 元宵
    greeting's 月儿圆 and a 春节 greeting's 谢谢 name no other occasion."""
    text = greeting or ""
    mask = [False] * len(text)
    tiers: list[set[str]] = [set(), set(), set(), set()]
    for pattern, occasion in GREETING_OCCASION_PATTERNS:
        for m in pattern.finditer(text):
            if not any(mask[m.start():m.end()]):
                _claim(mask, m.start(), m.end())
                tiers[0].add(occasion)
    _claim_words(text, mask, GREETING_NEUTRAL_PHRASES)
    for match in _find(text, _GREETING_OCCASION_INDEX, mask):
        if match[2] == "周年" and any(w in text for w in _COMPANY_WORDS):
            tiers[1].add("开业")
            continue
        if _cue_is_figurative_or_time(text, match):
            continue
        # A word may belong to several occasions: _find claims a span once, so add the others here.
        for occasion in _GREETING_OCCASIONS_OF[match[2]]:
            tiers[_cue_tier(match[2], occasion)].add(occasion)
    if any(w in text for w in _FESTIVAL_WORDS):
        tiers[3].clear()
    named = next((tier for tier in tiers if tier), set())
    return {o for o in named if not any(o in GREETING_DOMINATES.get(d, ()) for d in named)}


def _cue_tier(word: str, occasion: str) -> int:
    if occasion == "感谢":
        return 3
    if occasion in GREETING_WEAK_OCCASIONS:
        return 2
    return 1 if word in GREETING_WEAK_CUES else 0


def _cue_is_figurative_or_time(text: str, match: tuple[int, int, str, str]) -> bool:
    start, end, word, _c = match
    if word in GREETING_CUE_CONTEXT and not any(w in text for w in GREETING_CUE_CONTEXT[word]):
        return True
    if any(w in text for w in GREETING_CUE_EXCLUDED_BY.get(word, ())):
        return True
    if start > 0 and text[start - 1] in _OPENING_QUOTES:
        return True
    return bool(_GREETING_DURATION_RE.match(text, end) or _FIGURE_AFTER_RE.match(text, end)
                or _NEGATED_BEFORE_RE.search(text[max(0, start - 6):start]))


def occasions_compatible(a: str, b: str) -> bool:
    """Whether a greeting for occasion a may name occasion b (and the other way round)."""
    return a == b or frozenset((a, b)) in COMPATIBLE_PAIRS


def names_addressee(greeting: str, addressee: str) -> bool:
    """Whether the greeting uses a 称呼 word of the addressee (妈妈 -> 妈/母亲/娘...)."""
    words = ADDRESSEE_NAMES.get(addressee, ()) + (addressee,)
    return any(w in (greeting or "") for w in words)


def _char_count(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def length_fits(greeting: str, spec: LengthSpec | None) -> bool:
    """Whether the greeting's length fits the spec (no spec: anything fits)."""
    if spec is None:
        return True
    low, high = spec.bounds()
    if not low <= _char_count(greeting) <= high:
        return False
    if spec.kind == "four_char":  # every phrase between punctuation has four characters
        phrases = [p for p in _SPLIT_RE.split(greeting) if p]
        return bool(phrases) and all(len(p) == 4 for p in phrases)
    if spec.kind == "sentence":  # at most one sentence end inside the text
        return len(re.findall(r"[。！!？?]", greeting.rstrip("。！!？?…~～"))) == 0
    return True


def longest_repeat_run(text: str) -> int:
    """Longest run of one character repeated back to back (香香香香 -> 4; '' -> 0)."""
    best, run, prev = 0, 0, None
    for ch in text or "":
        run = run + 1 if ch == prev else 1
        prev = ch
        best = max(best, run)
    return best
