"""The admin dashboard (admins only), one module per page group, each with its routes and a thin service:

- overview.py: the home page (counts, rankings per day, open work, models in use, current round)
- rounds.py: rounds list with the start form, one round's live progress, loss curves and metrics
- models.py: model version lineage, promotion and roll-back, two versions side by side
- leaderboard.py: Bradley-Terry ratings of every version
- annotators.py: per-annotator output, speed, agreement, timing, recent rankings
- users.py: accounts, roles, passwords and API tokens
- data.py: prompt sets (priority, pause), the rankings browser (drop) and flagged candidates (hide)
- quality.py: agreement, Krippendorff's alpha, biases, and the overlapped sets with their consensus
- import_export.py: the Import page and the Export form

routes.py gathers their routers; common.py holds what they share (page parameter, chart data responses,
redirects), charts.py the SVG chart geometry and CSV/JSON tables, paging.py the pager, schemas.py the
forms and filters. Pages read through the owning features' repositories and services (app.training,
app.prompts, app.annotation, app.auth) and take their statistics from app.quality; no queries live here.
"""
