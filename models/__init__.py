"""ML and generation library: training, scoring, explanations, segments, content. No Prefect imports."""
