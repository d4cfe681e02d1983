"""The fjordgate policy language: models, loading, evaluation, location facts."""

__all__: list[str] = []
