"""The report as FHIR R4: a ``collection`` Bundle of one ``MeasureReport`` per scope
(合计, 门诊, 急诊), as INDICATORS.md "FHIR" asks.

Each MeasureReport is ``type: summary`` with ``reporter`` (the reporting Organization) and
``period``; one ``group`` per indicator (``code`` from ``urn:audit-engine:indicator``)
holds the ``initial-population``, ``denominator`` and ``numerator`` counts and the
``measureScore``, with a ``stratifier`` whose strata are the institutions. A figure whose
denominator is empty has no ``measureScore`` (FHIR has no null). Counts put their count
in ``initial-population`` and ``numerator``; times (``continuous-variable``) put the
decided tasks in ``initial-population`` and the seconds in ``measureScore`` (unit s).
"""

from __future__ import annotations

import uuid
from typing import Any

from audit_engine.stats.definitions import BY_CODE, SLICE_CODES
from audit_engine.stats.reports import ReportData

INDICATOR_SYSTEM = "urn:audit-engine:indicator"
INSTITUTION_SYSTEM = "urn:audit-engine:institution"
MEASURE = "urn:audit-engine:Measure/county-review-indicators"
POP_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCOPE_CODES = {"合计": "all", "门诊": "AMB", "急诊": "EMER"}


def _pop(code: str, count: int | None) -> dict[str, Any]:
    return {"code": {"coding": [{"system": POP_SYSTEM, "code": code}]}, "count": int(count or 0)}


def _populations(code: str, v: dict[str, Any], decided: int) -> list[dict[str, Any]]:
    kind = BY_CODE[code].kind
    if kind == "count":
        return [_pop("initial-population", v["numerator"]), _pop("numerator", v["numerator"])]
    if kind == "time":
        return [_pop("initial-population", decided)]
    return [_pop("initial-population", v["denominator"]), _pop("denominator", v["denominator"]),
            _pop("numerator", v["numerator"])]


def _score(code: str, v: dict[str, Any]) -> dict[str, Any] | None:
    if v["value"] is None:
        return None
    kind = BY_CODE[code].kind
    if kind == "time":
        return {"value": v["value"], "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"}
    if kind == "count":
        return {"value": v["value"]}
    return {"value": v["value"], "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}


def _decided(values: dict[str, dict[str, Any]]) -> int:
    return int(values["pharmacist_decided_rate"]["numerator"] or 0)


def measure_report(data: ReportData, scope: str) -> dict[str, Any]:
    fig = data.scopes[scope]
    groups = []
    for code in SLICE_CODES:
        ind = BY_CODE[code]
        v = fig.alliance[code]
        group: dict[str, Any] = {
            "code": {"coding": [{"system": INDICATOR_SYSTEM, "code": code, "display": ind.name}], "text": ind.name},
            "population": _populations(code, v, _decided(fig.alliance)),
        }
        score = _score(code, v)
        if score is not None:
            group["measureScore"] = score
        strata = []
        for inst, name in data.institutions.items():
            if inst not in fig.rows:
                continue
            sv = fig.rows[inst][code]
            stratum: dict[str, Any] = {
                "value": {"coding": [{"system": INSTITUTION_SYSTEM, "code": inst, "display": name}], "text": name},
                "population": _populations(code, sv, _decided(fig.rows[inst])),
            }
            s_score = _score(code, sv)
            if s_score is not None:
                stratum["measureScore"] = s_score
            strata.append(stratum)
        if strata:
            group["stratifier"] = [{"code": [{"text": "机构"}], "stratum": strata}]
        groups.append(group)
    return {
        "resourceType": "MeasureReport",
        "id": f"{data.period.label}-{SCOPE_CODES[scope]}".replace("~", "_"),
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": data.generated_at.replace(microsecond=0).isoformat() + "Z",
        "reporter": {"identifier": {"system": INSTITUTION_SYSTEM, "value": data.reporter[0]},
                     "display": data.reporter[1]},
        "period": {"start": data.period.start.isoformat(), "end": data.period.end.isoformat()},
        "extension": [{"url": "urn:audit-engine:fhir:StructureDefinition:report-scope", "valueString": scope}],
        "group": groups,
    }


def measure_report_bundle(data: ReportData) -> dict[str, Any]:
    reports = [measure_report(data, scope) for scope in data.scopes]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": data.generated_at.replace(microsecond=0).isoformat() + "Z",
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r} for r in reports],
    }
