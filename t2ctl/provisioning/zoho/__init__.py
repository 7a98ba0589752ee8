"""Provisioning in Zoho Inventory: the OAuth token cache (``oauth``), the fleet's call budget
(``pace``), the HTTP client and its envelope (``client``), the cache of contact and item ids
(``ids``), the provisioner, and the catalogue sync. It knows Zoho, not orders: it takes and
returns plain values."""
