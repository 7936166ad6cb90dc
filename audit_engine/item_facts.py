"""One MedicationRequest → one item fact dict (drug, dose, frequency, daily dose, route, days).

Whatever cannot be established becomes a :class:`FactIssue` with a Chinese message and the
FHIRPath of the element; nothing here raises on clinical content.

Decisions:
* several ``dosageInstruction`` entries with the *same* ``sequence`` run concurrently
  (1 片 morning + 2 片 evening): their daily doses add up. Different sequences run one after
  the other (a taper): the item carries the largest dose and the largest daily dose.
* a ``doseRange`` is read at its ``high`` end (a rule about a maximum must see it).
* a dose written without a structured Quantity is read from the dosage text (每次0.5g).
* ``overdose_reason`` is True when the order carries the extension
  ``OVERDOSE_REASON_URL`` (valueString) or a ``note`` starting with 超量理由 / 超剂量理由 /
  超说明书剂量理由; otherwise False.
* prn orders count their stated maximum: ``frequency`` and ``maxDosePerPeriod``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from audit_engine import dosing, units
from audit_engine.intake.model import Intake, ResourceEntry
from audit_engine.knowledge.dictionary import form_class, form_class_of_code, route_for_form
from audit_engine.schema import FactIssue

OVERDOSE_REASON_URL = "urn:audit-engine:fhir:StructureDefinition:overdose-reason"
OVERDOSE_NOTE_PREFIXES = ("超量理由", "超剂量理由", "超说明书剂量理由", "超剂量原因")
_TEXT_DOSE_RE = re.compile(
    r"(?:每次|一次|每回)?\s*(\d+(?:\.\d+)?)\s*(mg|g|µg|μg|ug|mcg|ml|iu|万u|万iu|u|片|粒|袋|支|丸|毫克|克|微克|毫升|单位|万单位)",
    re.IGNORECASE,
)


class DrugLike(Protocol):
    strengths: Any

    def item_fields(self) -> dict[str, Any]: ...

    def canonical_dose(self, value: float, unit: str) -> tuple[str, float] | None: ...


class DictionaryLike(Protocol):
    def resolve(self, codings: list[tuple[str | None, str | None, str | None]], text: str | None = None,
                institution: str | None = None) -> Any: ...


@dataclass
class _Dose:
    """One dosage instruction as read: dose variants (base units), frequency, where it came from."""

    variants: dict[str, float] = field(default_factory=dict)
    raw_value: float | None = None
    raw_unit: str | None = None  # the units.py symbol, or None for a unit-less dose
    per_day: float | None = None
    sequence: int | None = None


def _r(x: float) -> float:
    return round(x, 6)


def _codings(concept: Any) -> tuple[list[tuple[str | None, str | None, str | None]], str | None]:
    if concept is None:
        return [], None
    codings = [(c.system, c.code, c.display) for c in (concept.coding or [])]
    return codings, concept.text


def medication_concept(entry: ResourceEntry, intake: Intake) -> tuple[Any, str]:
    """The order's medication CodeableConcept (following medicationReference) and its FHIRPath."""
    mr = entry.resource
    if mr.medicationCodeableConcept is not None:
        return mr.medicationCodeableConcept, f"{entry.path}.medicationCodeableConcept"
    ref = getattr(mr.medicationReference, "reference", None) or ""
    where = f"{entry.path}.medicationReference"
    if ref.startswith("#"):
        for res in mr.contained or []:
            if res.get_resource_type() == "Medication" and res.id == ref[1:]:
                return res.code, where
    found = intake.find(ref)
    if found is not None and found.type == "Medication":
        return found.resource.code, where
    display = getattr(mr.medicationReference, "display", None)
    return (_TextOnly(display) if display else None), where


def medication_form(entry: ResourceEntry, intake: Intake) -> tuple[Any, str] | None:
    """``Medication.form`` of the order's Medication (contained or in the input) and its FHIRPath, or None."""
    ref = getattr(entry.resource.medicationReference, "reference", None) or ""
    if not ref:
        return None
    where = f"{entry.path}.medicationReference"
    if ref.startswith("#"):
        for res in entry.resource.contained or []:
            if res.get_resource_type() == "Medication" and res.id == ref[1:]:
                return (res.form, f"{where}.form") if res.form is not None else None
        return None
    found = intake.find(ref)
    if found is not None and found.type == "Medication" and found.resource.form is not None:
        return found.resource.form, f"{found.path}.form"
    return None


INJECTION_ROUTES = ("静滴", "静注", "肌注", "皮下")


def _texts_of(concept: Any) -> list[str]:
    if concept is None:
        return []
    return [t for t in [getattr(concept, "text", None), *(c.display for c in (concept.coding or []))] if t]


def form_class_of(entry: ResourceEntry, intake: Intake, concept: Any, drug: Any, route: str | None) -> str | None:
    """The 《处方管理办法》 form class of an order (schema item.form_class), or None when undetermined.

    Read, first hit wins: ``Medication.form`` (a SNOMED CT or HL7 v3 dose-form code, else its text
    or a coding's display, e.g. an EDQM standard term); the drug's name as written (吗啡缓释片, 盐酸吗啡片, 即释片, 注射液, 贴剂); the
    form a product code pinned (codes.csv); then the route narrows the dictionary's forms
    (皮下 → the injection; 口服 → the oral forms, which must all agree).
    """
    form = medication_form(entry, intake)
    for coding in (form[0].coding or []) if form else []:
        if (cls := form_class_of_code(coding.system, coding.code)) is not None:
            return cls
    for text in _texts_of(form[0]) if form else []:
        if (cls := form_class(text)) is not None:
            return cls
    for text in _texts_of(concept):
        if (cls := form_class(text)) is not None:
            return cls
    if drug is None:
        return None
    if drug.form_class is not None:
        return str(drug.form_class)
    if route is None:
        return None
    if route in INJECTION_ROUTES:
        candidates = [f for f in drug.forms if form_class(f) == "注射剂"]
    else:
        candidates = [f for f in drug.forms if form_class(f) != "注射剂" and route_for_form(f, drug.route) == route]
    classes = {form_class(f) for f in candidates}
    return classes.pop() if len(classes) == 1 else None


@dataclass(frozen=True)
class _TextOnly:
    text: str
    coding: tuple[()] = ()


def _describe(codings: list[tuple[str | None, str | None, str | None]], text: str | None) -> str:
    shown = text or next((d for _, _, d in codings if d), None) or "（无名称）"
    codes = "、".join(f"{s or '?'}|{c}" for s, c, _ in codings if c)
    return f"{shown}（编码 {codes}）" if codes else shown


def _quantity_unit(q: Any, where: str, item: str, issues: list[FactIssue]) -> tuple[bool, str | None]:
    """(readable, units.py symbol or None for no unit) of a Quantity; reports unknown or conflicting units."""
    code_u = dosing.dose_unit(q.code) if q.code else None
    text_u = dosing.dose_unit(q.unit) if q.unit else None
    if q.code and q.unit and code_u and text_u and code_u != text_u:
        issues.append(FactIssue("UNIT_CONFLICT", f"剂量单位矛盾：code 为 '{q.code}'，unit 为 '{q.unit}'", item, where))
        return False, None
    written = q.code or q.unit
    symbol = code_u or text_u
    if written and symbol is None:
        issues.append(FactIssue("DOSE_UNPARSEABLE", f"无法识别的剂量单位 '{written}'", item, where))
        return False, None
    return True, symbol


def canonical_variants(value: float, unit: str | None, drug: DrugLike | None, weight_kg: float | None
                       ) -> tuple[dict[str, float], str | None]:
    """Dose variants {dimension: base-unit value} for ``value unit``, or ({}, why-not in Chinese)."""
    if unit is None:
        # A unit-less dose counts units of the product (Synthea: 1 = one tablet of "X 10 MG Oral Tablet").
        unit = "片"
    u = units.lookup(unit)
    if u.dimension in ("mass", "activity"):
        return {u.dimension: value * u.factor}, None
    if u.dimension == "mass_per_kg":
        if weight_kg is None:
            return {}, f"剂量按体重开具（{unit}），但缺少患者体重"
        return {"mass": value * u.factor * weight_kg}, None
    if u.dimension == "volume":
        out = {"volume": value * u.factor}
        if drug is not None:
            conv = drug.canonical_dose(value, unit)
            if conv is not None and conv[0] != "volume":
                out[conv[0]] = conv[1]
        return out, None
    if u.dimension == "count":
        conv = drug.canonical_dose(value, unit) if drug is not None else None
        if conv is None:
            return {}, f"剂量单位 '{unit}' 无法换算为药量：药品规格不明或有多个规格"
        return {conv[0]: conv[1]}, None
    return {}, f"'{unit}' 不是剂量单位"


def _strength_dimensions(drug: DrugLike) -> set[str]:
    dims = set()
    for s in getattr(drug, "strengths", ()) or ():
        try:
            dims.add(units.lookup(s.unit).dimension)
        except units.UnitError:
            continue
    return dims


def _read_dose(dosage: Any, where: str, item: str, drug: DrugLike | None, weight_kg: float | None,
               issues: list[FactIssue]) -> tuple[_Dose, bool]:
    """The dose of one dosage instruction; the bool says whether a dose was written at all."""
    out = _Dose(sequence=dosage.sequence)
    qty, qwhere = None, where
    for j, dr in enumerate(dosage.doseAndRate or []):
        if dr.doseQuantity is not None:
            qty, qwhere = dr.doseQuantity, f"{where}.doseAndRate[{j}].doseQuantity"
            break
        if dr.doseRange is not None and (dr.doseRange.high or dr.doseRange.low) is not None:
            qty = dr.doseRange.high or dr.doseRange.low
            qwhere = f"{where}.doseAndRate[{j}].doseRange.{'high' if dr.doseRange.high else 'low'}"
            break
    if qty is None or qty.value is None:
        m = _TEXT_DOSE_RE.search(dosage.text or "")
        if m is None:
            return out, False
        value, symbol = float(m.group(1)), dosing.dose_unit(m.group(2))
        qwhere = f"{where}.text"
        if symbol is None:
            issues.append(FactIssue("DOSE_UNPARSEABLE", f"无法识别的剂量单位 '{m.group(2)}'", item, qwhere))
            return out, True
    else:
        ok, symbol = _quantity_unit(qty, qwhere, item, issues)
        if not ok:
            return out, True
        value = float(qty.value)
    if value <= 0:
        issues.append(FactIssue("DOSE_UNPARSEABLE", f"剂量应大于 0，收到 {value:g}", item, qwhere))
        return out, True
    # kept even when the amount cannot be converted: days' supply can still be counted in 片
    out.raw_value, out.raw_unit = value, symbol
    variants, why = canonical_variants(value, symbol, drug, weight_kg)
    if why is not None:
        issues.append(FactIssue("DOSE_UNPARSEABLE", why, item, qwhere))
        return out, True
    if drug is not None and symbol is not None:
        dims = _strength_dimensions(drug)
        written = units.lookup(symbol).dimension
        if written in ("mass", "activity") and dims and written not in dims and dims <= {"mass", "activity"}:
            issues.append(FactIssue(
                "UNIT_CONFLICT", f"剂量单位 '{symbol}' 与药品规格单位（" + "、".join(sorted(
                    {s.unit for s in drug.strengths})) + "）矛盾", item, qwhere))
            return out, True
    out.variants = variants
    return out, True


def _read_frequency(dosage: Any, where: str, item: str, issues: list[FactIssue]) -> tuple[float | None, bool, bool]:
    """(administrations per day, prn, something was written) for one dosage instruction."""
    timing = dosage.timing
    from_repeat = from_code = None
    if timing is not None and timing.repeat is not None:
        r = timing.repeat
        from_repeat = dosing.frequency_from_repeat(
            r.frequency, r.frequencyMax, float(r.period) if r.period is not None else None, r.periodUnit,
            list(r.when or []), [str(t) for t in (r.timeOfDay or [])])
    code_reading = None
    if timing is not None and timing.code is not None:
        for text in [*(c.code for c in timing.code.coding or []), timing.code.text]:
            code_reading = dosing.frequency_from_code(text)
            if code_reading is not None:
                break
        from_code = code_reading.per_day if code_reading else None
    text_reading = dosing.frequency_from_text(dosage.text) or dosing.frequency_from_text(dosage.patientInstruction)
    prn = bool(dosage.asNeededBoolean) or dosage.asNeededCodeableConcept is not None or bool(
        (text_reading and text_reading.prn) or (code_reading and code_reading.prn))
    if from_repeat is not None and from_code is not None and abs(from_repeat - from_code) > 1e-9:
        issues.append(FactIssue(
            "FREQUENCY_UNPARSEABLE", f"频次矛盾：timing.repeat 为每日 {from_repeat:g} 次，timing.code 为每日 {from_code:g} 次",
            item, f"{where}.timing"))
        return None, prn, True
    if from_repeat is not None:
        return from_repeat, prn, True
    if from_code is not None:
        return from_code, prn, True
    if text_reading is not None and text_reading.per_day is not None:
        return text_reading.per_day, prn, True
    written = timing is not None or bool(dosage.text)
    return None, prn, written


def _max_per_day_from_limit(dosage: Any, dose: _Dose, drug: DrugLike | None) -> float | None:
    """Administrations per day implied by maxDosePerPeriod (prn orders), or None."""
    limit = dosage.maxDosePerPeriod
    if limit is None or limit.numerator is None or limit.denominator is None or not dose.variants:
        return None
    num, den = limit.numerator, limit.denominator
    days = dosing.duration_days(float(den.value) if den.value is not None else None, den.code or den.unit)
    if not days or num.value is None:
        return None
    symbol = dosing.dose_unit(num.code or num.unit) if (num.code or num.unit) else None
    if (num.code or num.unit) and symbol is None:
        return None
    variants, why = canonical_variants(float(num.value), symbol, drug, None)
    common = [d for d in variants if d in dose.variants and dose.variants[d] > 0]
    if why is not None or not common:
        return None
    return variants[common[0]] / dose.variants[common[0]] / days


def _route(dosage: Any, where: str, item: str, issues: list[FactIssue]) -> str | None:
    """The written route (code, then text, then the method); ROUTE_UNKNOWN when written but not understood."""
    concept = dosage.route
    route = None
    if concept is not None:
        for c in concept.coding or []:
            route = dosing.route_from_code(c.code) or dosing.route_from_text(c.display)
            if route:
                break
        from_text = dosing.route_from_text(concept.text)
        if route is None or (route == "静注" and from_text == "静滴"):  # the HIS's own word refines the IV code
            route = from_text
        if route is None:
            shown = concept.text or "、".join(f"{c.code or ''} {c.display or ''}".strip() for c in concept.coding or [])
            issues.append(FactIssue("ROUTE_UNKNOWN", f"无法识别的给药途径 '{shown}'", item, f"{where}.route"))
            return None
    else:
        route = dosing.route_from_text(dosage.text)
    method = dosage.method
    method_text = " ".join([*(c.display or c.code or "" for c in (method.coding or [])), method.text or ""]) if method else ""
    if route == "静注" and (dosing.route_from_text(method_text) == "静滴" or "infus" in method_text.lower()
                           or any(dr.rateQuantity or dr.rateRatio or dr.rateRange for dr in dosage.doseAndRate or [])):
        route = "静滴"  # IV route + infusion method or rate = 静滴
    return route


def _days(mr: Any, doses: list[_Dose], per_day_units: float | None, daily: dict[str, float],
          drug: DrugLike | None) -> float | None:
    """Days' supply: expectedSupplyDuration, else Timing bounds, else dispensed quantity ÷ daily use."""
    disp = mr.dispenseRequest
    if disp is not None and disp.expectedSupplyDuration is not None:
        d = disp.expectedSupplyDuration
        days = dosing.duration_days(float(d.value) if d.value is not None else None, d.code or d.unit)
        if days is not None:
            return days
    for dosage in mr.dosageInstruction or []:
        rep = dosage.timing.repeat if dosage.timing is not None else None
        if rep is not None and rep.boundsDuration is not None:
            b = rep.boundsDuration
            days = dosing.duration_days(float(b.value) if b.value is not None else None, b.code or b.unit)
            if days is not None:
                return days
    if disp is None or disp.quantity is None or disp.quantity.value is None or not doses:
        return None
    q = disp.quantity
    written = q.code or q.unit
    symbol = dosing.dose_unit(written) if written else None
    if written and symbol is None:
        return None
    first = doses[0]
    if per_day_units and (symbol == first.raw_unit or (symbol, first.raw_unit) in _SAME_COUNT) and first.raw_value:
        return float(q.value) / per_day_units
    variants, why = canonical_variants(float(q.value), symbol, drug, None)
    common = [d for d in variants if daily.get(d)]
    if why is None and common:
        return variants[common[0]] / daily[common[0]]
    return None


# A dispensed quantity in 片 and a dose in 粒 (or the reverse) count the same units.
_SAME_COUNT = {("片", "粒"), ("粒", "片"), ("片", None), (None, "片")}


def _overdose_reason(mr: Any) -> bool:
    for ext in mr.extension or []:
        if ext.url == OVERDOSE_REASON_URL and (ext.valueString or ext.valueBoolean):
            return True
    return any((n.text or "").lstrip().startswith(OVERDOSE_NOTE_PREFIXES) for n in mr.note or [])


def normalise_item(entry: ResourceEntry, intake: Intake, *, dictionary: DictionaryLike, institution: str | None,
                   weight_kg: float | None, issues: list[FactIssue], index: int = 0) -> dict[str, Any]:
    """The item facts of one order; appends a FactIssue for everything that cannot be established."""
    mr = entry.resource
    item_id = mr.id or f"item-{index + 1}"
    item: dict[str, Any] = {"id": item_id, "reference": f"MedicationRequest/{item_id}"}
    concept, cwhere = medication_concept(entry, intake)
    codings, text = _codings(concept)
    drug = dictionary.resolve(codings, text, institution) if (codings or text) else None
    if drug is not None and hasattr(drug, "narrowed_by_text"):
        # A code names the drug, the written name or Medication.form often the product (盐酸吗啡片):
        # narrowing lets "2 片" convert through that form's strength.
        form = medication_form(entry, intake)
        for written in [*(_texts_of(form[0]) if form else []), text]:
            narrowed = drug.narrowed_by_text(written)
            if narrowed is not drug:
                drug = narrowed
                break
    if drug is None:
        issues.append(FactIssue("UNKNOWN_DRUG", f"药品无法识别：{_describe(codings, text)}", item_id, cwhere))
        # Not a rule field (rules see no name for an unknown drug): what the pharmacist reads.
        written = text or next((d for _, _, d in codings if d), None)
        if written:
            item["written_name"] = written
    else:
        item.update(drug.item_fields())

    dosages = list(mr.dosageInstruction or [])
    if not dosages:
        issues.append(FactIssue("DOSE_MISSING", "医嘱缺少用法用量（dosageInstruction）", item_id,
                                f"{entry.path}.dosageInstruction"))
    doses: list[_Dose] = []
    prn = False
    route: str | None = None
    for i, dosage in enumerate(dosages):
        where = f"{entry.path}.dosageInstruction[{i}]"
        dose, dose_written = _read_dose(dosage, where, item_id, drug, weight_kg, issues)
        per_day, is_prn, freq_written = _read_frequency(dosage, where, item_id, issues)
        prn = prn or is_prn
        if per_day is None and is_prn:
            per_day = _max_per_day_from_limit(dosage, dose, drug)
        dose.per_day = per_day
        if not dose_written:
            issues.append(FactIssue("DOSE_MISSING", "缺少单次剂量", item_id, f"{where}.doseAndRate"))
        if per_day is None and not any(x.code == "FREQUENCY_UNPARSEABLE" and x.where and x.where.startswith(where)
                                       for x in issues):
            if is_prn:
                msg = "按需用药未注明每日最多次数或最大剂量，无法审核日剂量"
            elif freq_written:
                msg = "无法解析给药频次：" + (dosage.text or "timing 中没有可读的 frequency/period、when 或 code")
            else:
                msg = "缺少给药频次"
            code = "FREQUENCY_UNPARSEABLE" if freq_written or is_prn else "DOSE_MISSING"
            issues.append(FactIssue(code, msg, item_id, f"{where}.timing" if dosage.timing else where))
        route = route or _route(dosage, where, item_id, issues)
        doses.append(dose)
    if route is not None:
        item["route"] = route
    cls = form_class_of(entry, intake, concept, drug, item.get("route"))
    if cls is not None:
        item["form_class"] = cls
        item["injection"] = cls == "注射剂"
        item["sustained_release"] = cls == "缓控释制剂"
    else:
        item.pop("form_class", None)
    # A route the order does not state is filled from the dictionary's default above; the
    # form rule 途径已写 = 否 still needs to know it was missing. An unreadable route was written.
    item["route_stated"] = route is not None or any(
        i.code == "ROUTE_UNKNOWN" and i.item == item_id for i in issues)
    item["prn"] = prn
    item["overdose_reason"] = _overdose_reason(mr)

    read = [d for d in doses if d.variants]
    if read:
        dose_max: dict[str, float] = {}
        for d in read:
            for dim, v in d.variants.items():
                dose_max[dim] = max(dose_max.get(dim, 0.0), v)
        daily = _daily(doses)
        item.update(dosing.dose_facts(dose_max, daily, weight_kg))
        if read[0].raw_unit:
            item["dose_unit"] = read[0].raw_unit  # as written, for messages (render.format_field)
    else:
        daily = {}
    freqs = [d.per_day for d in doses if d.per_day is not None]
    if freqs and len(freqs) == len(doses):
        item["frequency"] = _r(_frequency(doses))
    per_day_units = None
    if doses and doses[0].raw_value and all(d.raw_unit == doses[0].raw_unit and d.per_day for d in doses):
        per_day_units = sum(d.raw_value * d.per_day for d in doses if d.raw_value and d.per_day)
    days = _days(mr, doses, per_day_units, daily, drug)
    if days is not None:
        item["days"] = _r(days)
    return item


def _groups(doses: list[_Dose]) -> list[list[_Dose]]:
    groups: dict[Any, list[_Dose]] = {}
    for d in doses:  # instructions without a sequence are read as concurrent
        groups.setdefault(d.sequence if d.sequence is not None else -1, []).append(d)
    return list(groups.values())


def _daily(doses: list[_Dose]) -> dict[str, float]:
    """Daily dose per dimension: concurrent instructions add up, sequential ones take the maximum."""
    best: dict[str, float] = {}
    for group in _groups(doses):
        if any(d.per_day is None or not d.variants for d in group):
            continue
        dims = set.intersection(*(set(d.variants) for d in group))
        for dim in dims:
            total = sum(d.variants[dim] * (d.per_day or 0.0) for d in group)
            best[dim] = max(best.get(dim, 0.0), total)
    return best


def _frequency(doses: list[_Dose]) -> float:
    return max(sum(d.per_day or 0.0 for d in group) for group in _groups(doses))
