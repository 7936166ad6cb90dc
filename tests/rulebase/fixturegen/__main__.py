"""Rewrite fixtures/fhir/clean/ and fixtures/fhir/flagged/ from the scenario lists."""

from __future__ import annotations

from pathlib import Path

from .build import write
from .clean import CLEAN
from .clinical import CLINICAL_CLEAN, CLINICAL_FLAGGED
from .flagged import FLAGGED

ROOT = Path(__file__).resolve().parents[3] / "fixtures" / "fhir"


def main() -> None:
    clean = write(CLEAN, ROOT / "clean", serial_base=1, with_expect=False)
    flagged = write(FLAGGED, ROOT / "flagged", serial_base=501, with_expect=True)
    clean += write(CLINICAL_CLEAN, ROOT / "clean", serial_base=301, with_expect=False)
    flagged += write(CLINICAL_FLAGGED, ROOT / "flagged", serial_base=801, with_expect=True)
    print(f"wrote {len(clean)} clean and {len(flagged)} flagged prescriptions under {ROOT}")


if __name__ == "__main__":
    main()
