"""Background duties, each a small loop that talks only to the database and the notifier
(lib/oban/stager.ex, lib/oban/plugins/*.ex). Leader-only duties ask the peer first."""
