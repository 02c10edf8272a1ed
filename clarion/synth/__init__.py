"""Synthetic CRM with planted truth and injected defects: the data every test, demo and benchmark uses."""
