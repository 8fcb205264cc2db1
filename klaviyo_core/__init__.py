"""Klaviyo plumbing shared by tap-klaviyo and target-klaviyo.

Auth, the ``revision`` header, rate limiting, retries, error mapping and filter
building live here once, so both plugins talk to Klaviyo the same way.
"""
