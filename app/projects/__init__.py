"""Projects: separate annotation efforts on one server (prompt sets, guidelines, flag types, settings,
members, and one reward model and policy line each). `service` holds the rules (who sees what, the
settings a project resolves to), `repository` the queries, `schemas` the API's shapes."""
