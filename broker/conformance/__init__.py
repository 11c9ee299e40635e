"""Pilot evaluation of member-state single windows (`broker conformance`): the criteria in one
declarative table (criteria.py), the probes of an inbox (inbox.py) and the signed report
(report.py). docs/conformance.md lists what is evaluated."""
