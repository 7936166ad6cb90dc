"""Generator of the seed-rulebase FHIR fixtures (run: python -m tests.rulebase.fixturegen)."""
