"""Everyday and abbreviated names of drug classes, for "did you mean" hints.

A pharmacist who writes a class the way it is said on the ward (``抗生素``, ``消炎药``,
``PPI``) gets the dictionary's class name suggested, not the nearest spelling (``抗生素`` is
one character from ``维生素类``, which ``difflib`` would offer). The table maps a common
name to the dictionary classes it stands for, most likely first; entries are self-evident
equivalences of clinical Chinese or standard abbreviations, and a test checks that every
target is a class of the shipped dictionary.

``消炎药`` is ambiguous: in everyday speech it means antibiotics (《抗菌药物临床应用指导原则》
2015 and NHC patient education warn that 抗菌药物 "不是消炎药"), in pharmacology anti-inflammatory
drugs; both are offered.
"""

from __future__ import annotations

from collections.abc import Iterable

CLASS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "抗生素": ("抗菌药物",),
    "抗菌素": ("抗菌药物",),
    "抗菌药": ("抗菌药物",),
    "消炎药": ("抗菌药物", "非甾体抗炎药"),
    "抗炎药": ("非甾体抗炎药", "糖皮质激素"),
    "NSAID": ("非甾体抗炎药",),
    "NSAIDs": ("非甾体抗炎药",),
    "止痛药": ("解热镇痛药", "非甾体抗炎药"),
    "镇痛药": ("解热镇痛药", "阿片类"),
    "退烧药": ("解热镇痛药",),
    "降血压药": ("降压药",),
    "抗高血压药": ("降压药",),
    "降血糖药": ("降糖药",),
    "降脂药": ("调脂药",),
    "他汀": ("他汀类",),
    "激素": ("糖皮质激素",),
    "皮质激素": ("糖皮质激素",),
    "PPI": ("质子泵抑制剂",),
    "ACEI": ("血管紧张素转换酶抑制剂",),
    "普利类": ("血管紧张素转换酶抑制剂",),
    "ARB": ("血管紧张素II受体拮抗剂",),
    "沙坦类": ("血管紧张素II受体拮抗剂",),
    "CCB": ("钙通道阻滞剂",),
    "地平类": ("钙通道阻滞剂",),
    "抗凝剂": ("抗凝药",),
    "抗血小板剂": ("抗血小板药",),
    "安眠药": ("镇静催眠药",),
    "催眠药": ("镇静催眠药",),
    "安定类": ("苯二氮䓬类",),
    "头孢": ("头孢菌素类",),
    "头孢类": ("头孢菌素类",),
    "青霉素": ("青霉素类",),
    "喹诺酮": ("喹诺酮类",),
    "沙星类": ("喹诺酮类",),
    "大环内酯": ("大环内酯类",),
    "氨基糖苷": ("氨基糖苷类",),
    "胰岛素": ("胰岛素类",),
    "抗过敏药": ("抗组胺药",),
    "止咳药": ("镇咳药",),
    "利尿药": ("利尿剂",),
    "β阻滞剂": ("β受体阻滞剂",),
    "抗抑郁剂": ("抗抑郁药",),
    "抗癫痫剂": ("抗癫痫药",),
    "泻剂": ("泻药",),
}


def synonym_hint(word: str, choices: Iterable[str]) -> str | None:
    """"是否应为“抗菌药物”？" when ``word`` is a common name of classes among ``choices``."""
    targets = CLASS_SYNONYMS.get(word) or CLASS_SYNONYMS.get(word.upper())
    if not targets:
        return None
    known = set(choices)
    found = [t for t in targets if t in known]
    if not found:
        return None
    return "是否应为" + "或".join(f"“{t}”" for t in found) + "？"
