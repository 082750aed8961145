"""Beat-driven tasks (see scheduler/schedule.py)."""
