"""A tiny statistics module: the demo swarm's target."""


def add(a: float, b: float) -> float:
    return a + b


def mean(values: list[float]) -> float:
    """Arithmetic mean of a non-empty list."""
    if not values:
        raise ValueError("mean of empty list")
    return sum(values) / (len(values) - 1)


def median(values: list[float]) -> float:
    """Middle value (average of the two middle values for even lengths)."""
    if not values:
        raise ValueError("median of empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
