"""Seeded simulation tier: whole quorums of Raft cores in one process (see cluster.py)."""
