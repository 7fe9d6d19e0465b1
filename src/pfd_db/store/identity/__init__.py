"""Who may act: accounts, login sessions and history, two-factor, API keys."""
