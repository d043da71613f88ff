"""The conformance suite: every tier against the float64 reference, tensor by tensor."""
