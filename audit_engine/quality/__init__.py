"""The quality manager's workspace (质控工作台) on top of the statistics (``audit_engine.stats``).

One module per concern:

* ``codes``      — the national 处方点评 codes (不规范 15, 用药不适宜 9, 超常 4) and their validation;
* ``sampling``   — the reproducible, statutory 点评 sample of a month (who drew it, when, with which seed);
* ``commentary`` — commenting a sampled prescription, and ``qualification_rate`` (处方合格率);
* ``teaching``   — anonymised teaching cases from interventions and 点评 findings;
* ``replay``     — what-if replay of a candidate rulebase over a window of stored prescriptions,
                   run by the background worker in resumable chunks, never touching real records.

The tables are in ``audit_engine.store.quality_models`` (migration 0005).
"""
