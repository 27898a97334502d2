"""rankloop: the web app of the RLHF loop (annotation, admin, JSON API)."""
