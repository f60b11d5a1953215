"""Nested records as flat dotted keys: how a config becomes MLflow params and how two cache
manifests are compared key by key."""


def flatten(record: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}. Non-empty mappings are descended into; every other value
    (lists and empty mappings included) is kept as it is."""
    out: dict[str, object] = {}
    for key, value in record.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out
