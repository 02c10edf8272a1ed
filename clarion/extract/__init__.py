"""Extract: CRM sources into the warehouse through dlt, checked against the contract, every row
accounted for."""
