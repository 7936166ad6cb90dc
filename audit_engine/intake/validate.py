"""Validation of single resources with the ``fhir.resources.R4B`` models, errors as FHIRPath issues.

Only the resource types the facts read are validated (see ``READ_TYPES``); other
resources in a Bundle (Synthea's Claim, ExplanationOfBenefit, ...) are checked for a
``resourceType`` and otherwise ignored: validating what nobody reads would double the
cost of a patient Bundle for nothing. fhir.resources does not check required elements
or code values, so the few codes the review depends on are checked here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from audit_engine.errors import InputIssue

from .model import ResourceEntry

READ_TYPES = frozenset({
    "MedicationRequest", "Medication", "Patient", "Encounter", "Condition", "AllergyIntolerance",
    "Observation", "Practitioner", "PractitionerRole", "Organization",
})

MR_STATUS = ("active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown")
MR_INTENT = ("proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option")
UNITS_OF_TIME = ("s", "min", "h", "d", "wk", "mo", "a")
GENDERS = ("male", "female", "other", "unknown")

_ZH_BY_TYPE: dict[str, str] = {
    "missing": "缺少必填元素",
    "extra_forbidden": "FHIR R4 中没有这个元素",
    "list_type": "应为数组（JSON 列表）",
    "dict_type": "应为 JSON 对象",
    "model_type": "应为 JSON 对象",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数",
    "float_parsing": "应为数值",
    "decimal_parsing": "应为数值",
    "decimal_type": "应为数值",
    "bool_parsing": "应为 true 或 false",
    "bool_type": "应为 true 或 false",
    "string_type": "应为字符串",
    "date_from_datetime_parsing": "日期格式无效",
}

# The well-known STU3 -> R4 moves, offered as hints when a shape is refused.
_MOVED_HINTS: dict[str, str] = {
    "doseQuantity": "R4 中应写在 dosageInstruction[].doseAndRate[].doseQuantity",
    "doseRange": "R4 中应写在 dosageInstruction[].doseAndRate[].doseRange",
    "rateQuantity": "R4 中应写在 dosageInstruction[].doseAndRate[].rateQuantity",
    "context": "R4 中 MedicationRequest.context 改名为 encounter",
    "assertedDate": "R4 中改名为 recordedDate",
}


def fhirpath(base: str, loc: Iterable[Any]) -> str:
    """``base`` plus a pydantic location tuple as FHIRPath: ('dosageInstruction', 0, 'timing') -> .dosageInstruction[0].timing."""
    out = base
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part)
            if name.endswith("__ext"):
                name = name[: -len("__ext")]
            out += f".{name}"
    return out


def _message(err: Any, model: type[Any]) -> tuple[str, str]:
    etype = str(err.get("type", ""))
    loc = err.get("loc", ())
    zh = _ZH_BY_TYPE.get(etype)
    if etype == "extra_forbidden" and loc:
        name = str(loc[-1])
        hint = _MOVED_HINTS.get(name)
        if hint is None:
            parent = _model_at(model, loc[:-1])
            if parent is not None:
                close = difflib.get_close_matches(name, [f for f in parent.model_fields if not f.endswith("__ext")], n=1)
                if close:
                    hint = f"是否应为 '{close[0]}'？"
        return "structure", f"{zh}：'{name}'" + (f"（{hint}）" if hint else "")
    detail = str(err.get("msg", "")).removeprefix("Value error, ")
    if etype == "missing" or detail.endswith("is required."):
        return "required", "缺少必填元素"
    return "value", f"{zh or '取值无效'}：{detail}" if zh else f"取值无效：{detail}"


def _model_at(model: type[Any], loc: Iterable[Any]) -> type[Any] | None:
    """The pydantic model class at ``loc`` inside ``model`` (to suggest a close field name)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        ann = fields[part].annotation
        current = _unwrap(ann)
        if current is None:
            return None
    return current if hasattr(current, "model_fields") else None


def _unwrap(ann: Any) -> Any:
    if hasattr(ann, "model_fields"):
        return ann
    name = getattr(ann, "__name__", "")
    if isinstance(ann, type) and name.endswith("Type") and len(name) > 4:
        # fhir.resources annotates with abstract "<Name>Type" placeholders; the model is looked up by name
        try:
            return get_fhir_model_class(name[:-4])
        except ValueError:
            return None
    for arg in getattr(ann, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def validate_resource(data: Any, path: str, issues: list[InputIssue]) -> ResourceEntry | None:
    """Validate one resource dict; append issues (FHIRPath under ``path``) and return None on failure."""
    if not isinstance(data, dict):
        issues.append(InputIssue("structure", "应为 FHIR 资源（JSON 对象）", expression=path))
        return None
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        issues.append(InputIssue("required", "缺少 resourceType", expression=f"{path}.resourceType"))
        return None
    if rtype not in READ_TYPES:
        return None
    model = get_fhir_model_class(rtype)
    try:
        resource = model.model_validate(data)
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            code, msg = _message(err, model)
            issues.append(InputIssue(code, f"{rtype}：{msg}", expression=fhirpath(path, err.get("loc", ()))))
        return None
    except (ValueError, TypeError) as exc:  # fhir.resources raises plain errors for a few shape checks
        issues.append(InputIssue("structure", f"{rtype}：{exc}", expression=path))
        return None
    _check_codes(rtype, data, path, issues)
    return ResourceEntry(resource, path)


def _check_code(value: Any, allowed: tuple[str, ...], where: str, issues: list[InputIssue], required: bool) -> None:
    if value is None:
        if required:
            issues.append(InputIssue("required", "缺少必填元素", expression=where))
        return
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
        hint = f"是否应为 '{close[0]}'？" if close else "可选值：" + "、".join(allowed)
        issues.append(InputIssue("code-invalid", f"无效的代码 '{value}'（{hint}）", expression=where))


def _check_codes(rtype: str, data: dict[str, Any], path: str, issues: list[InputIssue]) -> None:
    if rtype == "MedicationRequest":
        _check_code(data.get("status"), MR_STATUS, f"{path}.status", issues, required=True)
        _check_code(data.get("intent"), MR_INTENT, f"{path}.intent", issues, required=True)
        for i, dosage in enumerate(data.get("dosageInstruction") or []):
            repeat = ((dosage or {}).get("timing") or {}).get("repeat") or {}
            for key in ("periodUnit", "durationUnit"):
                if key in repeat:
                    _check_code(repeat[key], UNITS_OF_TIME, f"{path}.dosageInstruction[{i}].timing.repeat.{key}",
                                issues, required=False)
    elif rtype == "Patient":
        _check_code(data.get("gender"), GENDERS, f"{path}.gender", issues, required=False)
