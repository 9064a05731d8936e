"""Helpers for the dev stack, the tests and the benchmarks (never imported by the product)."""
