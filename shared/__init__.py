"""What every tier shares: the spec made executable (see SPEC.md)."""
