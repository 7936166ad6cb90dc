"""FHIR intake: submitted JSON → validated R4B resources grouped as one prescription (or IntakeError).

Entry points: :func:`parse_bundle`, :func:`parse_cds_request`, :func:`parse_medication_request`;
:func:`check_limits` / :func:`load_json` for raw bytes; :func:`operation_outcome` for errors.
"""

from __future__ import annotations

from .limits import IntakeLimits, check_limits, check_orders, check_structure, get_limits, load_json
from .model import Intake, ResourceEntry
from .outcome import operation_outcome
from .parse import parse_bundle, parse_cds_request, parse_medication_request

__all__ = [
    "Intake",
    "IntakeLimits",
    "ResourceEntry",
    "check_limits",
    "check_orders",
    "check_structure",
    "get_limits",
    "load_json",
    "operation_outcome",
    "parse_bundle",
    "parse_cds_request",
    "parse_medication_request",
]
