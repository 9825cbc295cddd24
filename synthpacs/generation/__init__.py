"""Generation: from a study record to pixels, masks and findings (DESIGN §4)."""
