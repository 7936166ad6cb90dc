"""Drug identity and clinical knowledge, loaded from the CSV tables in ``rulebase/tables``.

* :mod:`audit_engine.knowledge.dictionary` — codes and names → canonical :class:`Drug`
  (``load_dictionary``);
* :mod:`audit_engine.knowledge.csvio` — CSV rows with positions, collected diagnostics.

The knowledge tables the rules read (interactions, dose limits …) are declared in the rule
language (``表 … 来自 "tables/x.csv"``) and loaded and checked by ``audit_engine.lang``
(``lang.tables`` loads them, ``lang.checker`` checks their cells against this dictionary).

Column layouts and sources: ``rulebase/tables/SOURCES.md``.
"""
