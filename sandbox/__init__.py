"""A local, fake-but-faithful Vonage over HTTPS, for the dev stack and end-to-end tests.

It imports nothing from the project: an independent Vonage catches what a shared helper would hide.
"""
