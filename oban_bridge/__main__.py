from .cli import main

# Guarded: `start --processes N` spawns children, which import the parent's __main__ again.
if __name__ == "__main__":
    main(prog_name="oban-bridge")
