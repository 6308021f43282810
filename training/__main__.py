from training.cli import main

if __name__ == "__main__":  # guarded: spawned worker processes (scene generation) import this module
    raise SystemExit(main())
