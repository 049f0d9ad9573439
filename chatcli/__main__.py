"""`python -m chatcli` runs the command line."""

from chatcli.cli import main

if __name__ == "__main__":
    main()
