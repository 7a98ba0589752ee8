"""Money and drift, for IconTech's finance team and operators: what each partner sold in a
period (``settlement``), and whether the system of record says what the gateway says
(``reconciliation``)."""
