"""Attempt logs in, labelled requests out: the attempt-row schema, reading and checking logs, costs, labels, splits,
groups, `tierwise collect` (serving's logs joined into attempt rows) and synthetic logs. The lowest training layer."""
