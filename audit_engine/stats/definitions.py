"""The indicator catalogue of ``INDICATORS.md`` (sections A–C and F): codes, what each
counts, and where its definition comes from.

Every export (API, XLSX, CSV, MeasureReport) prints these texts beside the figures. An
indicator the official texts do not define carries ``alliance_own=True`` and is labelled
"本医共体口径" in reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["count", "proportion", "mean", "time"]
Section = Literal["A", "B", "C"]

ALLIANCE_OWN = "本医共体口径"


@dataclass(frozen=True, slots=True)
class Indicator:
    code: str
    name: str
    section: Section
    kind: Kind
    numerator: str
    denominator: str
    definition: str
    source: str
    alliance_own: bool = False

    @property
    def source_label(self) -> str:
        return f"{ALLIANCE_OWN}；{self.source}" if self.alliance_own and self.source else (
            ALLIANCE_OWN if self.alliance_own else self.source)


_I = Indicator

INDICATORS: tuple[Indicator, ...] = (
    # --- A. 审方运行 -------------------------------------------------------------------
    _I("prescriptions", "审核处方数", "A", "count", "审核处方数（每个提交的处方版本计一张）", "—",
       "审核的处方张数；修改后重新提交的处方再计一张，幂等重放不计。", "—"),
    _I("flag_rate", "系统提示率", "A", "proportion", "结论不为 pass 的处方数", "审核处方数",
       "系统给出提示（explain、recheck 或 block）的处方占比。", "", True),
    _I("recheck_rate", "转药师复核率", "A", "proportion", "结论为 recheck 的处方数", "审核处方数",
       "系统转药师人工复核的处方占比。", "", True),
    _I("block_rate", "系统拦截率", "A", "proportion", "结论为 block 的处方数", "审核处方数",
       "系统直接拦截（须修改）的处方占比。", "", True),
    _I("pharmacist_decided_rate", "药师复核完成率", "A", "proportion", "药师作出决定（通过、拒绝、打回）的任务数",
       "复核任务数", "复核任务中由药师本人作出决定的比例；超时自动处理不计入分子。", "", True),
    _I("timeout_rate", "超时自动处理率", "A", "proportion", "超时自动通过或超时升级的任务数", "复核任务数",
       "超时后由系统处理的任务占比，单独报告，不计为药师审核。升级后又由药师决定的任务两项均计。",
       "zlrecipe 的超时自动通过机制；单列报告", True),
    _I("intervention_rate", "药师干预率", "A", "proportion", "药师拒绝或打回的任务数", "审核处方数",
       "药师干预（拒绝或打回）的处方占全部审核处方的比例。",
       "《医疗机构处方审核规范》（国卫办医发〔2018〕14号）提出干预率，未给公式", True),
    _I("acceptance_rate", "干预成功率（医生接受率）", "A", "proportion", "打回后医生修改处方的任务数",
       "打回后医生已答复的任务数", "药师打回后，医生接受并修改处方的比例。",
       "文献参考：29家医院合并 93.99%（李汶睿 2021）；97.71%（谢 2021，中国药房）", True),
    _I("double_sign_rate", "医生坚持（双签）率", "A", "proportion", "打回后医生坚持原处方（双签）的任务数",
       "打回后医生已答复的任务数", "药师打回后，医生坚持原处方并双签的比例。", "", True),
    _I("decision_seconds_p50", "药师审核时长中位数（秒）", "A", "time", "—", "—",
       "从系统审核到药师作出决定的秒数，取药师已决定任务的中位数（线性插值）。",
       "文献参考：29家医院中 8 家人工复核平均 ≤ 60 秒", True),
    _I("decision_seconds_p90", "药师审核时长第90百分位（秒）", "A", "time", "—", "—",
       "从系统审核到药师作出决定的秒数，取药师已决定任务的第 90 百分位（线性插值）。",
       "文献参考：29家医院中 8 家人工复核平均 ≤ 60 秒", True),
    _I("explain_override_rate", "医生说明率", "A", "proportion",
       "结论为 explain 且医生已说明（CDS 反馈 overridden 或填写理由）的处方数", "结论为 explain 的处方数",
       "需医生说明理由的处方中，医生给出说明的比例。", "CDS Hooks 2.0 feedback", True),
    # --- B. 规则效果 (group_by=rule) ---------------------------------------------------------
    _I("hits", "命中处方数", "B", "count", "该规则触发的处方数", "—", "该规则至少触发一次的处方张数。", "", True),
    _I("hit_rate", "命中率", "B", "proportion", "该规则触发的处方数", "同一范围的审核处方数",
       "该规则触发的处方占同一范围全部审核处方的比例。", "", True),
    _I("agreement_rate", "药师认同率", "B", "proportion", "该规则触发且药师拒绝或打回的任务数",
       "该规则触发且药师已决定的任务数",
       "精确度的近似：规则常触发而药师多予通过，即为噪声规则（命中 ≥ 20 且认同率 < 0.2）。", "", True),
    _I("override_rate", "医生忽略率", "B", "proportion", "该规则卡片的 CDS 反馈为 overridden 的条数",
       "该规则卡片的全部 CDS 反馈条数", "医生对该规则提示选择忽略（overridden）的比例。", "CDS Hooks 2.0 feedback", True),
    # --- C. 处方指标 ------------------------------------------------------------------------
    _I("drugs_per_prescription", "平均每张处方用药品种数", "C", "mean", "药品品种数（处方药品条目）", "审核处方数",
       "每张处方平均开具的药品品种数。",
       "WHO/INRUD 处方指标（WHO/DAP/93.1）；参考值 < 2；安徽县级医院 3.52（Wang 2013）"),
    _I("antimicrobial_rate", "抗菌药物处方比例", "C", "proportion", "含 ≥ 1 种抗菌药物（字典抗菌药物分级）的处方数",
       "审核处方数", "使用抗菌药物的处方占比。",
       "WHO/INRUD；国家目标：门诊 ≤ 20%，急诊 ≤ 40%（《抗菌药物临床应用管理办法》及专项整治方案）"),
    _I("injection_rate", "注射剂处方比例", "C", "proportion", "含 ≥ 1 种注射剂的处方数", "审核处方数",
       "使用注射剂的处方占比。", "WHO/INRUD；参考值 < 20%"),
    _I("essential_item_rate", "基本药物品种占比", "C", "proportion", "属于国家基本药物目录的药品品种数", "药品品种数",
       "处方药品条目中国家基本药物（字典基药标记，2018年版目录）所占比例。", "WHO/INRUD（% of items from the EDL）"),
    _I("essential_prescription_rate", "基本药物处方占比", "C", "proportion", "含 ≥ 1 种国家基本药物的处方数",
       "审核处方数", "使用国家基本药物的处方占比。", "三级公立医院绩效考核指标（门诊患者基本药物处方占比）"),
    _I("emergency_iv_steroid_rate", "急诊糖皮质激素静脉使用率", "C", "proportion",
       "静脉使用全身用糖皮质激素（ATC H02，静滴或静注）的急诊处方数", "急诊处方数",
       "急诊处方中静脉使用糖皮质激素的比例。", "《药事管理专业医疗质量控制指标（2020年版）》"),
    _I("off_formulary_rate", "目录外用药比例", "C", "proportion", "不在本机构级别用药目录内的药品品种数（含系统无法识别的药品）",
       "药品品种数", "处方药品条目中不在医共体统一用药目录（本机构级别）内的比例。",
       "医共体统一用药目录、上下级用药衔接", True),
)

BY_CODE: dict[str, Indicator] = {i.code: i for i in INDICATORS}
RULE_CODES: tuple[str, ...] = tuple(i.code for i in INDICATORS if i.section == "B")
# What a row of any grouping but ``rule`` carries; rule rows carry RULE_CODES.
SLICE_CODES: tuple[str, ...] = tuple(i.code for i in INDICATORS if i.section != "B")
# Indicators whose spread across members means something (plain counts depend on size).
SPREAD_CODES: tuple[str, ...] = tuple(i.code for i in INDICATORS if i.section != "B" and i.kind != "count")
# Monitoring (用药监测, INDICATORS.md F) and the national targets.
MONITORED_CODES: tuple[str, ...] = ("antimicrobial_rate", "injection_rate", "emergency_iv_steroid_rate")
TARGETS: dict[tuple[str, str | None], float] = {
    ("antimicrobial_rate", "门诊"): 0.20,
    ("antimicrobial_rate", "急诊"): 0.40,
}
TARGET_SOURCE = "门诊抗菌药物处方比例 ≤ 20%，急诊 ≤ 40%（国家卫生健康委抗菌药物临床应用专项整治目标）"
