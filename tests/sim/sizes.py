"""Sizes for the simulator tests: small enough that the whole suite runs in minutes."""

from __future__ import annotations

#: Peers per run in the per-scenario and campaign tests: every built-in scenario keeps its
#: shape at this size and runs in about half a second.
CI_PEERS = 8
#: Seeds per scenario in the campaign.
CAMPAIGN_SEEDS = 20
