"""Integrations with the frameworks Python apps already run: Django (`contrib.django`),
FastAPI/Starlette (`contrib.fastapi`) and SQLAlchemy 2 (`contrib.sqlalchemy`). Each is an optional
extra (`oban_bridge[django]`, …) and imports its framework only when used."""
