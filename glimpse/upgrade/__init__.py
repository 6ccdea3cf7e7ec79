"""Change a collection's encoder without starting over (``glimpse upgrade``).

A map learnt on a re-embedded sample puts every old vector into the new encoder's space at
once, so search keeps working, in the new space, while a resumable backfill replaces the
mapped vectors with real ones. :mod:`.maps` fits the map, :mod:`.state` is what the
collection records, :mod:`.backfill` runs the phases.
"""

from .backfill import DEFAULT_POLICY, DEFAULT_SAMPLE, POLICIES, UpgradeReport, upgrade

__all__ = ["DEFAULT_POLICY", "DEFAULT_SAMPLE", "POLICIES", "UpgradeReport", "upgrade"]
