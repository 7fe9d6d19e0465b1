"""Telling people: notification preferences, the delivery queue, webhooks, digests."""
