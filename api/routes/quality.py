"""The quality manager's workspace (质控工作台): 处方点评 samples and commentary, the
处方合格率, teaching cases and what-if replay of a candidate rulebase.

Role ``quality`` or ``admin``; a user bound to a member institution works on that
institution only (as in the statistics). Routes parse and answer; ``audit_engine.quality``
decides. The figures of the dashboard come from ``/api/v1/stats``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import QualityWorkDep, UnitOfWorkDep
from api.openapi import errors
from api.routes.stats import ERRORS, Figure
from audit_engine.auth import Principal
from audit_engine.unit_of_work import UnitOfWork

router = APIRouter(prefix="/api/v1", tags=["quality"])

MonthQ = Annotated[str, Query(description="YYYY-MM（医共体时区）", examples=["2026-11"])]


# --------------------------------------------------------------------------- models
class CommentCodeOut(BaseModel):
    code: str = Field(description="A01–A15 不规范处方，B01–B09 用药不适宜处方，C01–C04 超常处方")
    group: str
    group_name: str
    item: int
    text: str
    source: str = Field(description="出处：《医院处方点评管理规范（试行）》（卫医管发〔2010〕28号）条、项")


class SampleIn(BaseModel):
    month: str = Field(description="抽样月份 YYYY-MM", examples=["2026-11"])
    seed: int | None = Field(default=None, description="随机种子；缺省由系统生成并保存。同一月份与种子必得同一样本")
    institution: str | None = Field(default=None, description="只抽这一家机构（机构编码）；缺省为可见的全部机构")
    at_least: int = Field(default=0, ge=0, le=5000, description="每家机构每层至少抽多少张（不低于法定最低数）")

    model_config = {"json_schema_extra": {"examples": [{"month": "2026-11", "seed": 20261130}]}}


class Stratum(BaseModel):
    institution: str
    institution_name: str
    stratum: str = Field(description="western（门急诊西药、中成药）或 herbal（中药饮片）")
    stratum_name: str
    population: int = Field(description="该月该层处方总数")
    minimum: int = Field(description="法定最低抽样数：门急诊 ≥1‰ 且 ≥100，中药饮片 ≥0.5% 且 ≥100；不足则全部")
    drawn: int


class CodeRef(BaseModel):
    code: str
    group: str
    text: str


class CommentOut(BaseModel):
    review_id: str
    judgement: str = Field(description="合理 或 不合理")
    codes: list[CodeRef]
    note: str | None
    commented_by: str
    commented_at: str


class SampleItem(BaseModel):
    position: int
    review_id: str
    institution: str
    institution_name: str
    stratum: str
    verdict: str
    max_level: int
    created_at: str
    comment: CommentOut | None


class SampleOut(BaseModel):
    id: str
    month: str
    seed: int
    drawn_by: str
    drawn_at: str
    strata: list[Stratum]
    size: int
    commented: int
    items: list[SampleItem] | None = None


class CommentIn(BaseModel):
    judgement: str = Field(description="合理 或 不合理", examples=["不合理"])
    codes: list[str] = Field(default_factory=list, max_length=28, description="不合理时至少一个国家点评代码")
    note: str | None = Field(default=None, max_length=2000, description="点评意见")

    model_config = {"json_schema_extra": {"examples": [
        {"judgement": "不合理", "codes": ["B05", "A12"], "note": "门诊超 7 日用量未注明理由；剂量偏大"}]}}


class QualificationRow(BaseModel):
    key: str
    label: str
    indicators: dict[str, Figure]


class CodeCount(BaseModel):
    code: str
    group: str
    text: str
    count: int


class QualificationOut(BaseModel):
    month: str
    rows: list[QualificationRow]
    alliance: dict[str, dict[str, Figure]]
    codes: list[CodeCount] = Field(description="该月点评发现的问题，按国家点评代码计数")
    groups: dict[str, int] = Field(description="不规范处方 / 用药不适宜处方 / 超常处方 的问题数")
    definition: str


class TeachingIn(BaseModel):
    review_id: str = Field(description="药师干预过（拒绝、打回）或点评为不合理的处方")
    title: str | None = Field(default=None, max_length=300)
    lesson: str | None = Field(default=None, max_length=4000, description="教学要点")


class TeachingOut(BaseModel):
    id: str
    source: str = Field(description="intervention（药师干预）或 comment（处方点评）")
    title: str
    case: dict[str, Any] = Field(description="匿名化内容：无患者姓名与任何标识，无处方号、医师与机构名称")
    created_by: str
    created_at: str


class CandidateOut(BaseModel):
    version: str
    label: str | None
    status: str
    uploaded_by: str | None
    uploaded_at: str | None


class ReplayIn(BaseModel):
    candidate: str = Field(description="候选规则库版本（已上传并通过校验、未激活）")
    days: int = Field(default=14, ge=1, le=90, description="重放最近多少天的处方")


class Example(BaseModel):
    review_id: str
    institution: str


class ReplayRule(BaseModel):
    rule_id: str
    title: str
    baseline_hits: int = Field(description="现行版本命中的处方数")
    candidate_hits: int = Field(description="候选版本命中的处方数")
    added: int = Field(description="候选版本新增提示的处方数")
    removed: int = Field(description="候选版本不再提示的处方数")
    level_changed: int = Field(default=0, description="两版都提示、但等级不同的处方数")
    levels: dict[str, int] = Field(default_factory=dict, description="等级变化，如 {\"7→2\": 57}")
    examples_added: list[Example]
    examples_removed: list[Example]
    examples_level_changed: list[Example] = Field(default_factory=list)


class ReplayInstitution(BaseModel):
    institution: str
    name: str
    examined: int
    added: int
    removed: int
    verdict_changes: int


class ReplayOut(BaseModel):
    id: str
    status: str = Field(description="queued、running、done 或 failed")
    candidate_version: str
    baseline_version: str
    days: int
    window: dict[str, str | None]
    total: int
    done: int
    progress: float
    requested_by: str
    requested_at: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    summary: dict[str, Any]
    rules: list[ReplayRule]
    institutions: list[ReplayInstitution]
    errors: list[dict[str, str]]


# --------------------------------------------------------------------------- 点评
@router.get("/quality/comment-codes", summary="国家处方点评代码（不规范 15、用药不适宜 9、超常 4，附出处）",
            response_model=list[CommentCodeOut], responses=errors(401, 403, 429))
def comment_codes(_: QualityWorkDep) -> list[dict[str, Any]]:
    from audit_engine.quality.codes import all_codes

    return [{"code": c.code, "group": c.group, "group_name": c.group_name, "item": c.item, "text": c.text,
             "source": c.source} for c in all_codes()]


@router.post("/quality/samples", status_code=201, summary="抽取处方点评样本（可复现、满足法定最低数，记录抽样人与时间）",
             response_model=SampleOut, responses=ERRORS)
def draw_sample(body: SampleIn, uow: UnitOfWorkDep, principal: QualityWorkDep) -> dict[str, Any]:
    from audit_engine.quality import sampling

    with uow as s:
        sample_id = sampling.draw(s, principal=principal, month=body.month, seed=body.seed,
                                  institution=body.institution, at_least=body.at_least)
    with uow as s:
        return sampling.sample_json(s, sampling.get_sample(s, sample_id=sample_id, principal=principal))


@router.get("/quality/samples", summary="点评样本列表（最近 100 个）", response_model=list[SampleOut], responses=ERRORS)
def list_samples(uow: UnitOfWorkDep, principal: QualityWorkDep,
                 month: Annotated[str | None, Query(description="YYYY-MM")] = None) -> list[dict[str, Any]]:
    from audit_engine.quality import sampling

    with uow as s:
        return sampling.list_samples(s, principal=principal, month=month)


@router.get("/quality/samples/{sample_id}", summary="点评样本：分层、每张处方与其点评", response_model=SampleOut,
            responses=ERRORS)
def get_sample(sample_id: str, uow: UnitOfWorkDep, principal: QualityWorkDep) -> dict[str, Any]:
    from audit_engine.quality import sampling

    with uow as s:
        return sampling.sample_json(s, sampling.get_sample(s, sample_id=sample_id, principal=principal))


@router.put("/quality/samples/{sample_id}/comments/{review_id}", summary="点评一张抽样处方：合理，或不合理并给出国家点评代码",
            response_model=CommentOut, responses=ERRORS)
def put_comment(sample_id: str, review_id: str, body: CommentIn, uow: UnitOfWorkDep,
                principal: QualityWorkDep) -> dict[str, Any]:
    from audit_engine.quality.commentary import comment

    with uow as s:
        out = comment(s, principal=principal, sample_id=sample_id, review_id=review_id,
                      judgement=body.judgement, codes=body.codes, note=body.note)
        return out


@router.get("/quality/qualification", summary="处方合格率（qualification_rate）：每家机构与医共体，按月；问题类型分布",
            response_model=QualificationOut, responses=ERRORS)
def qualification(uow: UnitOfWorkDep, principal: QualityWorkDep, month: MonthQ) -> dict[str, Any]:
    from audit_engine.quality.commentary import qualification as compute

    with uow as s:
        return compute(s, principal=principal, month=month)


# --------------------------------------------------------------------------- teaching cases
@router.post("/quality/teaching-cases", status_code=201, summary="把一次药师干预或点评发现收入教学案例库（匿名化）",
             response_model=TeachingOut, responses=ERRORS)
def add_teaching_case(body: TeachingIn, uow: UnitOfWorkDep, principal: QualityWorkDep) -> dict[str, Any]:
    from audit_engine.quality.teaching import make_case

    with uow as s:
        out = make_case(s, principal=principal, review_id=body.review_id, title=body.title, lesson=body.lesson)
        return out


@router.get("/quality/teaching-cases", summary="教学案例库", response_model=list[TeachingOut], responses=ERRORS)
def teaching_cases(uow: UnitOfWorkDep, principal: QualityWorkDep) -> list[dict[str, Any]]:
    from audit_engine.quality.teaching import list_cases

    with uow as s:
        return list_cases(s, principal=principal)


# --------------------------------------------------------------------------- what-if replay
@router.get("/quality/candidates", summary="可试运行的候选规则库版本（已上传、未激活）", response_model=list[CandidateOut],
            responses=ERRORS)
def candidates(uow: UnitOfWorkDep, _: QualityWorkDep) -> list[dict[str, Any]]:
    from audit_engine.quality import replay

    with uow as s:
        return replay.candidates(s)


def _start(uow: UnitOfWork, principal: Principal, candidate: str, days: int) -> dict[str, Any]:
    from audit_engine.quality import replay

    with uow as s:
        job = replay.create_job(s, principal=principal, candidate=candidate, days=days, baseline=None)
        return replay.job_json(job)


@router.post("/quality/replays", status_code=202, summary="试运行（what-if 重放）：候选版本重审最近 N 天的处方，后台进行",
             response_model=ReplayOut, responses=ERRORS)
def start_replay(body: ReplayIn, uow: UnitOfWorkDep, principal: QualityWorkDep) -> dict[str, Any]:
    return _start(uow, principal, body.candidate, body.days)


@router.post("/rulebases/{version}/replay", status_code=202, tags=["rulebase"],
             summary="试运行（what-if 重放）该版本：dry-run 的后台版本，逐规则、逐机构对照现行版本",
             response_model=ReplayOut, responses=ERRORS)
def replay_version(version: str, uow: UnitOfWorkDep, principal: QualityWorkDep,
                   days: Annotated[int, Query(ge=1, le=90, description="最近多少天")] = 14) -> dict[str, Any]:
    return _start(uow, principal, version, days)


@router.get("/quality/replays", summary="试运行任务列表（最近 50 个，不含明细）", response_model=list[ReplayOut],
            responses=ERRORS)
def list_replays(uow: UnitOfWorkDep, principal: QualityWorkDep) -> list[dict[str, Any]]:
    from audit_engine.quality import replay

    with uow as s:
        return replay.list_jobs(s, principal=principal)


@router.get("/quality/replays/{job_id}", summary="试运行任务：进度，以及逐规则、逐机构新增与消失的提示（附示例处方）",
            response_model=ReplayOut, responses=ERRORS)
def get_replay(job_id: str, uow: UnitOfWorkDep, principal: QualityWorkDep) -> dict[str, Any]:
    from audit_engine.quality.replay import get_job, job_json

    with uow as s:
        return job_json(get_job(s, job_id=job_id, principal=principal))
