"""Drug identity and clinical knowledge, loaded from the CSV tables in ``rulebase/tables``.

* :mod:`audit_engine.knowledge.dictionary` — codes and names → canonical :class:`Drug`
  (``load_dictionary``);
* :mod:`audit_engine.knowledge.tables` — the typed, validated knowledge tables the seed
  rules read (``load_tables``);
* :mod:`audit_engine.knowledge.csvio` — CSV rows with positions, collected diagnostics.

Column layouts and sources: ``rulebase/tables/SOURCES.md``.
"""
