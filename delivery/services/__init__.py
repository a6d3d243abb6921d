"""Writes for delivery, one module per room: dispatch (offers and who takes an order),
staff_actions (ops by hand), steps (the rider's way from pickup to drop)."""
