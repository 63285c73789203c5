from .cli import main

main(prog_name="oban-bridge")
