"""oban_bridge: Python workers and inserts on Elixir Oban's PostgreSQL tables."""
