"""The pure parts of `harness load`: profiles, SLOs, the history merge and the run's measurements.

They live in the harness, not in loadtests/, because the harness must never import loadtests/
(which imports Locust, and imports the harness's recorder: a cycle). The locustfile imports
these; `harness load` runs the locustfile by path, in Locust's own process.
"""
