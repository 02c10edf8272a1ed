"""Transform: dbt builds the staging marts, gates judge them, a passing build is published."""
