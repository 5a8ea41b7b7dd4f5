"""Reports over many jobs for the admin's charts."""
from __future__ import annotations


class Reports:
    pass
