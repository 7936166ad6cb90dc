"""The shipped dictionary holds what issue 4 §1 requires, by the names pharmacists write."""

from __future__ import annotations

import pytest

from audit_engine.knowledge.dictionary import load_dictionary

ISSUE4_DRUGS = """
辛伐他汀 阿托伐他汀 瑞舒伐他汀 氨氯地平 硝苯地平 依那普利 卡托普利 氯沙坦 缬沙坦 美托洛尔 比索洛尔 氢氯噻嗪
呋塞米 螺内酯 氯化钾 维拉帕米 地尔硫卓 地高辛 胺碘酮 单硝酸异山梨酯 硝酸甘油
华法林 阿司匹林 氯吡格雷 肝素 依诺肝素 利伐沙班
二甲双胍 格列本脲 格列齐特 阿卡波糖 左甲状腺素
奥美拉唑 泮托拉唑 埃索美拉唑 法莫替丁 多潘立酮 甲氧氯普胺 洛哌丁胺 蒙脱石
阿莫西林 阿莫西林克拉维酸 青霉素 哌拉西林他唑巴坦 头孢唑林 头孢拉定 头孢呋辛 头孢克洛 头孢曲松 头孢克肟
阿奇霉素 克拉霉素 红霉素 左氧氟沙星 环丙沙星 莫西沙星 多西环素 米诺环素 甲硝唑 克林霉素 庆大霉素 万古霉素
美罗培南 亚胺培南西司他丁 利奈唑胺 复方磺胺甲噁唑
氟康唑 伊曲康唑 奥司他韦 阿昔洛韦 利巴韦林
布洛芬 双氯芬酸 对乙酰氨基酚 曲马多 可待因 吗啡 替扎尼定 别嘌醇 秋水仙碱 甲氨蝶呤
氯雷他定 西替利嗪 氯苯那敏 氨溴索 右美沙芬 沙丁胺醇 茶碱 氨茶碱
泼尼松 地塞米松 甲泼尼龙
地西泮 阿普唑仑 艾司唑仑 苯巴比妥 卡马西平 丙戊酸钠 苯妥英 氟哌啶醇 利培酮 氟西汀 舍曲林
西地那非 葡萄糖酸钙 阿托品 利多卡因 维生素C 叶酸 硫酸亚铁
""".split()

# 十八反 and 十九畏 herbs (中国药典 2020 spelling) and the common herbs issue 4 names.
ISSUE4_HERBS = """
甘草 甘遂 京大戟 红大戟 海藻 芫花
川乌 草乌 附子 半夏 瓜蒌 瓜蒌子 瓜蒌皮 天花粉 川贝母 浙贝母 平贝母 伊贝母 湖北贝母 白蔹 白及
藜芦 人参 西洋参 党参 丹参 玄参 南沙参 北沙参 苦参 细辛 白芍 赤芍
硫黄 芒硝 玄明粉 水银 砒霜 狼毒 密陀僧 巴豆 牵牛子 丁香 郁金 三棱 肉桂 赤石脂 五灵脂
黄芪 当归 茯苓 白术
""".split()


@pytest.mark.parametrize("name", ISSUE4_DRUGS)
def test_every_issue4_drug_resolves_by_its_chinese_name(name: str) -> None:
    drug = load_dictionary().by_name(name)
    assert drug is not None, name
    assert not drug.herbal
    assert drug.atc and len(drug.atc) == 7, f"{name} lacks a full ATC code"


@pytest.mark.parametrize("name", ISSUE4_HERBS)
def test_every_required_herb_is_a_decoction_piece(name: str) -> None:
    drug = load_dictionary().by_name(name)
    assert drug is not None, name
    assert drug.herbal and drug.route == "煎服"


def test_dictionary_holds_at_least_300_drugs_and_60_decoction_pieces() -> None:
    drugs = load_dictionary().all()
    assert sum(1 for d in drugs if not d.herbal) >= 300
    assert sum(1 for d in drugs if d.herbal) >= 60


def test_combination_drugs_list_each_ingredient() -> None:
    d = load_dictionary()
    assert set(d.by_name("阿莫西林克拉维酸").ingredients) == {"阿莫西林", "克拉维酸"}  # type: ignore[union-attr]
    assert set(d.by_name("复方磺胺甲噁唑").ingredients) == {"磺胺甲噁唑", "甲氧苄啶"}  # type: ignore[union-attr]


def test_classes_include_every_atc_level() -> None:
    simva = load_dictionary().by_name("辛伐他汀")
    assert simva is not None
    assert {"C", "C10", "C10A", "C10AA", "C10AA01", "他汀类"} <= set(simva.classes)


@pytest.mark.parametrize("cls", [
    "他汀类", "非甾体抗炎药", "质子泵抑制剂", "血管紧张素转换酶抑制剂", "血管紧张素II受体拮抗剂", "氟喹诺酮类",
    "四环素类", "大环内酯类", "头孢菌素类", "青霉素类", "β-内酰胺类", "碳青霉烯类", "氨基糖苷类", "阿片类",
    "苯二氮䓬类", "5-羟色胺能药物", "QT间期延长药物", "强效CYP3A4抑制剂", "中效CYP3A4抑制剂", "硝酸酯类",
    "PDE5抑制剂", "含钙制剂", "抗凝药", "抗血小板药", "糖皮质激素", "磺酰脲类", "乌头类",
])
def test_required_therapeutic_classes_have_members(cls: str) -> None:
    members = [d for d in load_dictionary().all() if cls in d.classes]
    assert members, cls


def test_controlled_and_graded_drugs_carry_their_class() -> None:
    d = load_dictionary()
    assert d.by_name("吗啡").control == "麻醉"  # type: ignore[union-attr]
    assert d.by_name("地西泮").control == "精二"  # type: ignore[union-attr]
    assert d.by_name("万古霉素").antimicrobial_grade == "特殊使用级"  # type: ignore[union-attr]
    assert d.by_name("阿莫西林").antimicrobial_grade == "非限制使用级"  # type: ignore[union-attr]
    assert d.by_name("奥司他韦").antimicrobial_grade is None  # type: ignore[union-attr]
