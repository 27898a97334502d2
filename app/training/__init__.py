"""Training rounds and model versions, and the contract with the worker.

The web feature: `routes` in app/api/rounds.py and app/api/model_versions.py, `service` (follow, list,
cancel, demonstrations), `repository`, `schemas`, `cli` (round, generate, import-demonstrations).
The contract the worker imports too (no web code, no torch; import-linter checks it): `config` (the round
config), `queue` (job queue and task names), `rounds` (start a round, promote a policy, shared constants),
`pairs` (the preference pairs a ranking implies), `repository` (the queries those rules use).
"""
