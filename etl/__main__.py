"""`python -m etl` is the same as the `asana-etl` console script."""

from etl.cli import main

if __name__ == "__main__":
    main()
