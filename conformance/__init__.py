"""The conformance suite: every tier against an outside truth (transformers in float64), tensor by tensor."""
