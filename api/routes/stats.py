"""Statistics for the quality manager (质控): indicators, reports, spread, rule audit,
monitoring and prescriber feedback (CONTRACT.md "Statistics", INDICATORS.md).

Role ``quality`` or ``admin``. A user bound to a member institution sees only that
institution's rows; the centre's users see the centre and its members; users with no
institution see all. Routes parse and answer; ``audit_engine.stats`` decides and counts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import RuntimeDep, StatsReaderDep, UnitOfWorkDep
from api.openapi import errors
from api.runtime import Runtime

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])

ERRORS = errors(400, 401, 403, 404, 422, 429, descriptions={
    400: "参数错误（OperationOutcome，指出哪个参数）",
    403: "需要 quality 或 admin 角色（OperationOutcome）",
    404: "机构不存在或无权查看（OperationOutcome）",
})

FromQ = Annotated[str, Query(alias="from", description="开始日期 YYYY-MM-DD（医共体时区，含当天）", examples=["2026-11-01"])]
ToQ = Annotated[str, Query(alias="to", description="结束日期 YYYY-MM-DD（含当天）", examples=["2026-11-30"])]
InstitutionQ = Annotated[str | None, Query(description="只看这一家机构（机构编码）")]
TypeQ = Annotated[str | None, Query(alias="type", description="门诊 或 急诊；缺省为合计")]


# --------------------------------------------------------------------------- response models
class Figure(BaseModel):
    """One indicator's figure. ``denominator`` is null for plain counts and times; ``value`` is
    null when the denominator is 0."""

    numerator: int | float | None
    denominator: int | None
    value: float | None


class Row(BaseModel):
    key: str = Field(description="机构编码、机构编码/科室、机构编码/医师编码、规则、药品编码（?名称 为无法识别的药品）或 YYYY-MM")
    label: str
    institution: str | None = None
    prescriber: str | None = None
    title: str | None = None
    indicators: dict[str, Figure]


class Spread(BaseModel):
    n: int = Field(description="有值的成员机构数")
    median: float | None
    q1: float | None
    q3: float | None
    cv: float | None = Field(description="变异系数（总体标准差/均值）")
    outliers: list[str] = Field(description="离群机构编码（低于 Q1−1.5·IQR 或高于 Q3+1.5·IQR；只列出调用者可见的机构）")


class Alliance(BaseModel):
    indicators: dict[str, Figure]


class IndicatorsOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: str
    filters: dict[str, str | None]
    rows: list[Row]
    alliance: Alliance
    spread: dict[str, Spread]

    model_config = {"populate_by_name": True, "json_schema_extra": {"examples": [{
        "from": "2026-11-01", "to": "2026-11-30", "group_by": "institution",
        "filters": {"institution": None, "type": None},
        "rows": [{"key": "TOWN01", "label": "城关镇卫生院",
                  "indicators": {"flag_rate": {"numerator": 3, "denominator": 40, "value": 0.075},
                                 "prescriptions": {"numerator": 40, "denominator": None, "value": 40}}}],
        "alliance": {"indicators": {"flag_rate": {"numerator": 30, "denominator": 400, "value": 0.075}}},
        "spread": {"flag_rate": {"n": 6, "median": 0.08, "q1": 0.05, "q3": 0.11, "cv": 0.31, "outliers": ["VIL02"]}},
    }]}}


class MonthSpread(BaseModel):
    month: str
    spread: dict[str, Spread]
    members: dict[str, dict[str, float | None]] = Field(description="可见成员机构每个指标的值")
    member_names: dict[str, str]


class SpreadOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    type: str | None
    months: list[MonthSpread]

    model_config = {"populate_by_name": True}


class Example(BaseModel):
    review_id: str
    institution: str
    created_at: str
    verdict: str
    pharmacist_decision: str | None


class RuleRow(BaseModel):
    rule_id: str
    title: str
    indicators: dict[str, Figure]
    noisy: bool = Field(description="命中 ≥ 20 且药师认同率 < 0.2")
    examples: list[Example] = Field(description="该规则命中的处方示例（药师通过的优先）")


class SilentRule(BaseModel):
    rule_id: str
    title: str


class RuleAuditOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    prescriptions: int
    rules: list[RuleRow]
    noisy: list[str]
    silent: list[SilentRule] = Field(description="现行规则库中近 90 天零命中的规则")
    silent_window: dict[str, str]
    thresholds: dict[str, float]

    model_config = {"populate_by_name": True}


class Band(BaseModel):
    mean: float
    sd: float
    low: float
    high: float
    months: int


class MonitoredFigure(BaseModel):
    code: str
    name: str
    type: str | None
    numerator: int | float | None
    denominator: int | None
    value: float | None
    band: Band | None = Field(description="本机构前六个月均值 ± 2SD（至少 3 个月有值）")
    target: float | None
    flags: list[str] = Field(description="above_target / above_band / below_band")


class MonitoredDrugUse(BaseModel):
    name: str
    category: str
    prescriptions: int
    history: dict[str, int]
    band: Band | None
    flags: list[str]


class MonitoredInstitution(BaseModel):
    institution: str
    name: str
    figures: list[MonitoredFigure]
    monitored_drugs: list[MonitoredDrugUse]


class Alert(BaseModel):
    institution: str
    institution_name: str
    code: str
    type: str | None
    value: float | None
    flag: str
    message: str
    drug: str | None = None


class MonitoringOut(BaseModel):
    month: str
    band_months: list[str]
    institutions: list[MonitoredInstitution]
    alerts: list[Alert]
    monitored_list: list[dict[str, str]]


class Problem(BaseModel):
    rule_id: str
    title: str
    prescriptions: int
    example_review_id: str


class PrescriberRow(BaseModel):
    institution: str
    institution_name: str
    prescriber: str | None
    name: str
    title: str | None
    prescriptions: Figure
    flag_rate: Figure
    institution_flag_rate: Figure
    alliance_flag_rate: Figure
    antimicrobial_rate: Figure
    injection_rate: Figure
    problems: list[Problem] = Field(description="最常见的三个问题（规则），各附一个示例审核")


class PrescriberFeedbackOut(BaseModel):
    month: str
    filters: dict[str, str | None]
    prescribers: list[PrescriberRow]


class IndicatorDefinition(BaseModel):
    code: str
    name: str
    section: str
    kind: str
    numerator: str
    denominator: str
    definition: str
    source: str


# --------------------------------------------------------------------------- routes
@router.get("/indicators", summary="指标（按机构、科室、医师、规则、药品或月份分组）", response_model=IndicatorsOut,
            response_model_by_alias=True, responses=ERRORS)
def get_indicators(
    uow: UnitOfWorkDep, principal: StatsReaderDep, from_: FromQ, to: ToQ,
    group_by: Annotated[str, Query(description="institution、department、prescriber、rule、drug 或 month")] = "institution",
    institution: InstitutionQ = None, visit_type: TypeQ = None,
) -> dict[str, Any]:
    from audit_engine.stats.indicators import indicators
    from audit_engine.stats.periods import day_range

    with uow as s:
        return indicators(s, principal=principal, period=day_range(from_, to), group_by=group_by,
                          institution=institution, visit_type=visit_type)


@router.get("/report", summary="期间报表：XLSX、CSV 或 FHIR MeasureReport（月、半年或年）", responses={
    200: {"description": "报表文件", "content": {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
        "text/csv": {}, "application/fhir+json": {}}},
    **ERRORS})
def get_report(
    uow: UnitOfWorkDep, principal: StatsReaderDep,
    month: Annotated[str | None, Query(description="YYYY-MM", examples=["2026-11"])] = None,
    half: Annotated[str | None, Query(description="YYYY-H1 或 YYYY-H2")] = None,
    year: Annotated[str | None, Query(description="YYYY")] = None,
    format: Annotated[str, Query(description="xlsx、csv 或 measure-report")] = "xlsx",
    institution: InstitutionQ = None,
) -> Response:
    from audit_engine.errors import InvalidRequestError
    from audit_engine.stats import export, reports
    from audit_engine.stats.periods import one_period

    if format not in reports.FORMATS:
        raise InvalidRequestError("format", f"format 应为 {'、'.join(reports.FORMATS)} 之一，收到 {format!r}")
    with uow as s:
        data = reports.report_data(s, principal=principal, period=one_period(month=month, half=half, year=year),
                                   institution=institution)
    body = export.render(data, format)
    name = reports.file_name(data, format)
    return Response(body, media_type=reports.MEDIA_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/spread", summary="同质化：逐月各指标在成员机构间的分布（中位数、四分位、CV、离群）",
            response_model=SpreadOut, response_model_by_alias=True, responses=ERRORS)
def get_spread(uow: UnitOfWorkDep, principal: StatsReaderDep, from_: FromQ, to: ToQ,
               visit_type: TypeQ = None) -> dict[str, Any]:
    from audit_engine.stats.indicators import spread_by_month
    from audit_engine.stats.periods import day_range

    with uow as s:
        return spread_by_month(s, principal=principal, period=day_range(from_, to), visit_type=visit_type)


@router.get("/rules", summary="规则审计：命中、认同率、忽略率、噪声规则与沉默规则，附示例处方",
            response_model=RuleAuditOut, response_model_by_alias=True, responses=ERRORS)
def get_rule_audit(runtime: RuntimeDep, uow: UnitOfWorkDep, principal: StatsReaderDep, from_: FromQ, to: ToQ,
                   institution: InstitutionQ = None, visit_type: TypeQ = None) -> dict[str, Any]:
    from audit_engine.stats.periods import day_range
    from audit_engine.stats.rule_audit import rule_audit

    with uow as s:
        return rule_audit(s, principal=principal, period=day_range(from_, to),
                          active_rules=active_rules(runtime), institution=institution, visit_type=visit_type)


def active_rules(runtime: Runtime) -> list[tuple[str, str]]:
    """(id, title) of every rule of the loaded rulebase (empty when none is loaded)."""
    engine = runtime.engine
    compiled = getattr(engine, "compiled", None) if engine is not None else None
    rules = getattr(compiled, "rules", None) or ()
    return [(str(r.id), str(getattr(r, "title", r.id))) for r in rules if getattr(r, "id", None)]


@router.get("/monitoring", summary="用药监测：抗菌药物、注射剂、急诊静脉激素与重点监控药品，超出本机构波动范围或目标时提示",
            response_model=MonitoringOut, responses=ERRORS)
def get_monitoring(uow: UnitOfWorkDep, principal: StatsReaderDep,
                   month: Annotated[str, Query(description="YYYY-MM", examples=["2026-11"])],
                   institution: InstitutionQ = None) -> dict[str, Any]:
    from audit_engine.stats.monitoring import monitoring

    with uow as s:
        return monitoring(s, principal=principal, month=month, institution=institution)


@router.get("/prescribers", summary="培训指导：每位医师的处方数、提示率（与本机构、医共体对照）和最常见的三个问题",
            response_model=PrescriberFeedbackOut, responses=ERRORS)
def get_prescriber_feedback(uow: UnitOfWorkDep, principal: StatsReaderDep,
                            month: Annotated[str, Query(description="YYYY-MM", examples=["2026-11"])],
                            institution: InstitutionQ = None,
                            prescriber: Annotated[str | None, Query(description="医师编码")] = None,
                            visit_type: TypeQ = None) -> dict[str, Any]:
    from audit_engine.stats.prescriber_feedback import prescriber_feedback

    with uow as s:
        return prescriber_feedback(s, principal=principal, month=month, institution=institution,
                                   prescriber=prescriber, visit_type=visit_type)


@router.get("/definitions", summary="指标定义（分子、分母、定义、来源）", response_model=list[IndicatorDefinition],
            responses=errors(401, 403, 429))
def get_definitions(principal: StatsReaderDep) -> list[dict[str, Any]]:
    from audit_engine.stats.definitions import INDICATORS

    return [{"code": i.code, "name": i.name, "section": i.section, "kind": i.kind, "numerator": i.numerator,
             "denominator": i.denominator, "definition": i.definition, "source": i.source_label or "—"}
            for i in INDICATORS]
