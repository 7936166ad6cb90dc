"""Quality statistics (质控统计): the indicators of ``INDICATORS.md`` and their reports.

One module per concern:

* ``periods``     — the alliance's time zone, months, half-years and years;
* ``recording``   — what a review records for statistics at review time (and the backfill);
* ``definitions`` — the indicator catalogue: codes, numerators, denominators, sources;
* ``queries``     — counting from the base tables, grouped by institution, department,
                    prescriber, rule, drug or month (late events count toward the review's period);
* ``spread``      — homogenisation (同质化): median, quartiles, CV and outliers across members;
* ``rule_audit``  — noisy and silent rules, with example reviews;
* ``monitoring``  — 用药监测: rates against the member's own six-month band and the targets;
* ``prescriber_feedback`` — 培训指导: per prescriber, beside the institution and the alliance;
* ``reports``     — XLSX, CSV and FHIR ``MeasureReport`` of one period;
* ``report_cli``  — ``audit-engine report``;
* ``demo_history``— months of realistic history for ``serve --demo``.
"""
