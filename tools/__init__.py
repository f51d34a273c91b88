"""Maintenance scripts run from the repository root (not part of the installed package).

``python3 tools/lock.py`` refreshes the dependency lock, ``python3 tools/try_newest.py`` tries the newest
releases against it; docs/dependencies.md says when to run which.
"""
