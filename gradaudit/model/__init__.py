"""The model: findings, reports and check codes as pure data (no torch, nothing else of gradaudit)."""
