"""The rules network behind ``audit_engine.engine``: durable_rules, driven by our own host.

* ``ir``      — the compiled form (shards, routes, fact layouts, derived fields), immutable;
* ``alpha``   — which conditions the core tests natively, and their explicit negations;
* ``host``    — rulesets and sessions on the C core (sentinel, batch assert, delete);
* ``runtime`` — one registered version: routing, facts per shard, matches;
* ``derive``  — the host-side parts with the reference semantics: derived fields, findings.

The compiler that produces ``ir`` is ``audit_engine.lang.compiler``.
"""
