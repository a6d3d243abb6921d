"""Writes for payments, one module per room: checkout, refunds, webhooks, reconciliation.

Rows are locked in the project's lock order (core.locks). No function holds a row lock while
it waits on Razorpay.
"""
