"""Tests of the seed rulebase (rulebase/) and its realistic FHIR fixtures."""
