"""Statistics over human rankings: the one home of every number the admin dashboard shows about versions
and annotators.

Two layers:

- Pure functions over `RankingRecord`s, no database (import them from `app.quality.stats`): records.py
  (the ranking data and tier helpers), intervals.py (Wilson and bootstrap intervals), outcomes.py and
  winrate.py (version-versus-version results), bradley_terry.py (ratings), consensus.py (one set's
  consensus), agreement.py (inter-annotator agreement), bias.py (position and length bias).
- Statistics over the live rankings in the database, cached per rankings state (cache.py): repository.py
  holds their SQL aggregates, version_stats.py turns them into human win-rates and Bradley-Terry ratings,
  annotator_stats.py into agreement, agreement with the consensus, and biases. They reproduce the pure
  functions' numbers (tests/quality/test_admin_stats.py checks it).

Adding a chart to the dashboard touches three places:

1. one statistics function here, e.g. in annotator_stats.py, returning plain dataclasses and wrapping its
   work in `cached(session, "<key>", compute)` (its SQL aggregate, if new data is needed, goes next to
   the others in repository.py);
2. one page module in app/admin (e.g. app/admin/quality.py): add the figures to the page's dataclass
   with a chart from app.admin.charts, and a `<name>.{fmt}` route returning a `charts.Table` for the
   CSV/JSON download;
3. one template in templates/admin, drawing it with the chart macros of _macros.html.
"""
