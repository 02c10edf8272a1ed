"""Operations: alerts, work pool and worker helpers, deployment triggers."""
