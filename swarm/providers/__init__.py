"""Provider layer: neutral types, one retry policy, and one adapter per official SDK."""
