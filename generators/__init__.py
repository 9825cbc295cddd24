"""Generator zoo: one folder per organ system and target (DESIGN.md section 4)."""
