"""Tests of the Common Reference Operator: rules, handlers end to end."""
