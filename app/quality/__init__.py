"""Statistics over human rankings for the admin dashboard: pure functions, no database access.

Import the public surface from `app.quality.stats`; the submodules group the methods by question
(win-rates, Bradley-Terry ratings, annotator agreement, consensus, biases).
"""
