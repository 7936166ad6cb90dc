"""Intake + fact normalisation timings (prints figures; not a test).

    python benchmarks/bench_intake.py [--repeat N]

1. a 6-resource Bundle (Patient, Organization, Practitioner, Encounter, Observation,
   MedicationRequest) built from fixtures/fhir/intake/adult_outpatient_full_context.json:
   p50 / p90 of parse_bundle + normalise (target p50 <= 1.5 ms);
2. the ~530 KB Synthea patient Bundle (target <= 150 ms), end to end from bytes
   (load_json: size + depth + entry checks, json parse, validation, normalisation), with the
   share spent in fhir.resources validation measured separately.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit_engine import intake
from audit_engine.facts import normalise
from audit_engine.intake import validate
from audit_engine.knowledge.dictionary import load_dictionary

ROOT = Path(__file__).resolve().parent.parent
SIX = ROOT / "fixtures" / "fhir" / "intake" / "adult_outpatient_full_context.json"
SYNTHEA = ROOT / "fixtures" / "fhir" / "intake" / "external" / "synthea-bundles" / "Louis_Maggio.json"


def _six_resource_bundle() -> dict[str, Any]:
    b = json.loads(SIX.read_text(encoding="utf-8"))
    keep = ("Patient", "Organization", "Practitioner", "Encounter", "Observation", "MedicationRequest")
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] in keep]
    assert len(b["entry"]) == 6
    return b


def _times(fn: Callable[[], object], repeat: int) -> list[float]:
    for _ in range(min(20, repeat)):
        fn()  # warm: pydantic builds validators lazily on first use
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _report(name: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=10)
    print(f"{name:<44} n={len(ms):<5} p50={statistics.median(ms):8.3f} ms  p90={q[8]:8.3f} ms  max={max(ms):8.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=500)
    args = ap.parse_args()
    dictionary = load_dictionary()

    six = _six_resource_bundle()
    _report("6-resource Bundle: parse_bundle", _times(lambda: intake.parse_bundle(six), args.repeat))
    parsed = intake.parse_bundle(six)
    _report("6-resource Bundle: normalise", _times(lambda: normalise(parsed, dictionary=dictionary), args.repeat))
    _report("6-resource Bundle: intake + normalise", _times(
        lambda: normalise(intake.parse_bundle(six), dictionary=dictionary), args.repeat))

    raw = SYNTHEA.read_bytes()
    payload = json.loads(raw)
    n = max(20, args.repeat // 10)
    print(f"\nSynthea Bundle: {len(raw) / 1024:.0f} KB, {len(payload['entry'])} entries")
    _report("Synthea: load_json (limits + json parse)", _times(lambda: intake.load_json(raw), n))
    read = [e["resource"] for e in payload["entry"] if e["resource"]["resourceType"] in validate.READ_TYPES]

    def validate_only() -> None:
        for r in read:
            validate.get_fhir_model_class(r["resourceType"]).model_validate(r)

    _report(f"Synthea: R4B validation of {len(read)} read resources", _times(validate_only, n))
    from fhir.resources.R4B.bundle import Bundle

    _report("Synthea: (for comparison) whole-Bundle validation", _times(lambda: Bundle.model_validate(payload), n))
    parsed_s = intake.parse_bundle(payload)
    _report("Synthea: normalise", _times(lambda: normalise(parsed_s, dictionary=dictionary), n))
    _report("Synthea: bytes -> facts (end to end)", _times(
        lambda: normalise(intake.parse_bundle(intake.load_json(raw)), dictionary=dictionary), n))


if __name__ == "__main__":
    main()
