"""The two models the change-feed benchmark saves: one with the change feed, one without."""
